using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// L2P, Learning to Prompt (Wang et al., CVPR 2022): a pool of M prompts P_m (each Lp tokens of width dim) with
/// learnable keys k_m ∈ R^dim, shared by every task. The query q(x) is the frozen pretrained backbone's class-token
/// feature of x, with no prompt. The N keys nearest to q(x) — γ is the cosine distance 1 − cos, so these are the N
/// largest cosine similarities (paper Eq. 3–4: K_x = the top-N of the pool by γ(q(x), k_m)) — pick N prompts,
/// which are concatenated and prepended to the token sequence after the class token (prompt tuning, the
/// `prependTokens` hook), N·Lp tokens in all. The same instance-wise selection is used for training and for
/// prediction (no task id).
///
/// The training loss adds the surrogate of paper Eq. 5, λ Σ_{m ∈ K_x} γ(q(x), k_m) = λ Σ (1 − cos(q(x), k_m)),
/// which pulls the chosen keys towards the queries that chose them; it is summed over the N selected keys and
/// averaged over the batch (as the PyTorch port l2p-pytorch reduces it). The backbone is frozen; the prompts, the
/// keys and the head's new rows train.
///
/// Differences from the paper and its code:
/// - The frequency-based diversity term (the paper's optional down-weighting of often-selected prompts during
///   training) is omitted, as is the batch-wise selection the official config and l2p-pytorch switch on
///   (`batchwise_prompt`: the batch's most frequent top-N used for every image of the batch): selection here is per
///   image, as Eq. 3 states it.
/// - The classifier reads the class token's feature (<see cref="VisionTransformer.Features"/>), as CODA-Prompt's
///   re-implementation of L2P does, not the average of the prompt positions' outputs that the official config
///   (`vit_classifier = "prompt"`) and l2p-pytorch (`head_type = 'prompt'`) use: the backbone's hook returns only
///   the class token.
/// - The weight λ (<see cref="ClassifyOptions.PullWeight"/>) defaults to 0.5, this project's choice; the official
///   JAX config (google-research/l2p, configs/cifar100_l2p.py) uses 1.0, l2p-pytorch 0.1, and CODA-Prompt's code
///   adds the surrogate with no weight, summed over the batch.
/// - Prompts and keys start uniform in [0, 1), as torch's `nn.init.uniform_` leaves them in l2p-pytorch and in
///   CODA-Prompt's `tensor_prompt`.
public sealed class L2pLearner : ClassIncrementalLearner
{
    /// The paper's prompt length for L2P (Lp = 5).
    public const int DefaultPromptLength = 5;

    private Parameter? _prompts; // [M, Lp, dim]
    private Parameter? _keys;    // [M, dim]

    public L2pLearner(VisionTransformer backbone, ClassifyOptions options) : base(backbone, Validated(options))
    {
        foreach (var p in backbone.parameters()) p.requires_grad = false;
    }

    /// Checked before the base class builds the head, so a refused option leaves nothing to dispose.
    private static ClassifyOptions Validated(ClassifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.PoolSize < 1) throw new InputException($"PoolSize (pool_size) {options.PoolSize}: l2p needs at least one prompt in its pool");
        int length = options.PromptLength ?? DefaultPromptLength;
        if (length < 1) throw new InputException($"PromptLength (prompt_length) {length}: must be ≥ 1");
        if (options.TopN < 1 || options.TopN > options.PoolSize)
            throw new InputException($"TopN (top_n) {options.TopN}: l2p selects between 1 and PoolSize = {options.PoolSize} prompts");
        if (!(options.PullWeight >= 0) || double.IsInfinity(options.PullWeight))
            throw new InputException($"PullWeight (pull_weight) {options.PullWeight}: must be a finite number ≥ 0");
        return options;
    }

    private const string Decided = "PoolSize, PromptLength and the backbone's width";

    public override string Method => "l2p";

    /// Tokens per prompt (Lp).
    public int PromptLength => Options.PromptLength ?? DefaultPromptLength;

    /// The prompt pool [M, Lp, dim] (made when the first task begins or the learner is restored).
    public Parameter Prompts => _prompts ?? throw new InvalidOperationException("l2p's prompt pool is made when the first task begins");

    /// The prompt keys [M, dim].
    public Parameter Keys => _keys ?? throw new InvalidOperationException("l2p's prompt keys are made when the first task begins");

    /// The pool is made once, at the first task, and shared by all tasks after it.
    protected override void OnBeginTask(Generator? generator)
    {
        if (_prompts is not null) return;
        using var scope = torch.NewDisposeScope();
        var (dtype, device) = BackboneKind();
        long dim = Backbone.Config.EmbedDim;
        var prompts = torch.rand([Options.PoolSize, PromptLength, dim], dtype: ScalarType.Float32, generator: generator).to(dtype, device);
        var keys = torch.rand([Options.PoolSize, dim], dtype: ScalarType.Float32, generator: generator).to(dtype, device);
        _prompts = Owned(new Parameter(prompts, requires_grad: true));
        _keys = Owned(new Parameter(keys, requires_grad: true));
    }

    public override IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups()
    {
        yield return ("prompts", [Prompts, Keys], Options.LearningRate);
        yield return ("head", [Head.Weight, Head.Bias], Options.HeadLearningRate);
    }

    /// The query q(x): the frozen backbone's class-token feature with no prompt [B, dim] (no gradient).
    public Tensor Query(Tensor images)
    {
        using var noGrad = torch.no_grad();
        return Backbone.Features(images);
    }

    /// cos(q(x), k_m) for every key [B, M], and the indices of the N largest per row [B, N] (paper Eq. 3–4: the N
    /// keys of smallest cosine distance γ), in decreasing order of similarity.
    public (Tensor Cosines, Tensor Selected) Select(Tensor query)
    {
        using var scope = torch.NewDisposeScope();
        var cosines = nn.functional.normalize(query, dim: 1).matmul(nn.functional.normalize(Keys, dim: 1).t());
        var (_, selected) = cosines.topk(Options.TopN, dim: 1);
        return (cosines.MoveToOuterDisposeScope(), selected.MoveToOuterDisposeScope());
    }

    /// The selected prompts concatenated per image [B, N·Lp, dim], in the order of `selected` [B, N].
    public Tensor SelectedPrompts(Tensor selected)
    {
        using var scope = torch.NewDisposeScope();
        long b = selected.shape[0], n = selected.shape[1];
        var chosen = Prompts.index_select(0, selected.reshape(b * n)); // [B·N, Lp, dim]
        return chosen.reshape(b, n * PromptLength, Backbone.Config.EmbedDim).MoveToOuterDisposeScope();
    }

    protected override (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var query = Query(images);
        var (cosines, selected) = Select(query);
        var features = Backbone.Features(images, SelectedPrompts(selected));
        Tensor? pull = null;
        if (Options.PullWeight > 0)
        {
            // Paper Eq. 5's surrogate: λ Σ_{m ∈ K_x} (1 − cos(q(x), k_m)), summed over the N selected keys and
            // averaged over the batch. The query carries no gradient, so only the keys move.
            var distances = cosines.gather(1, selected).SubtractedFrom(1.0); // [B, N]
            pull = distances.sum(1).mean().Times(Options.PullWeight).MoveToOuterDisposeScope();
        }
        return (features.MoveToOuterDisposeScope(), pull);
    }

    public override Tensor Predict(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var query = Query(images);
        var (_, selected) = Select(query);
        var features = Backbone.Features(images, SelectedPrompts(selected));
        return Head.call(features).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> State()
    {
        var state = base.State();
        using var scope = torch.NewDisposeScope();
        state["l2p.prompts"] = Prompts.detach().clone().MoveToOuterDisposeScope();
        state["l2p.keys"] = Keys.detach().clone().MoveToOuterDisposeScope();
        return state;
    }

    protected override void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var scope = torch.NewDisposeScope();
        long dim = Backbone.Config.EmbedDim;
        var prompts = Expect(state, "l2p.prompts", [Options.PoolSize, PromptLength, dim], Decided);
        var keys = Expect(state, "l2p.keys", [Options.PoolSize, dim], Decided);
        var (dtype, device) = BackboneKind();
        DisposePool();
        _prompts = Owned(new Parameter(prompts.detach().to(dtype, device).clone(), requires_grad: true));
        _keys = Owned(new Parameter(keys.detach().to(dtype, device).clone(), requires_grad: true));
    }

    private void DisposePool()
    {
        _prompts?.Dispose();
        _keys?.Dispose();
        _prompts = null;
        _keys = null;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) DisposePool();
        base.Dispose(disposing);
    }
}
