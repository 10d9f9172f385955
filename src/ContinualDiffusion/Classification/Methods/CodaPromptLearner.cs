using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// CODA-Prompt, COntinual Decomposed Attention-based prompting (Smith et al., CVPR 2023). Instead of choosing
/// prompts from a pool, every image gets its own prompt, a weighted sum of prompt components:
///   p(x) = Σ_m α_m P_m,   α_m = γ(q(x) ⊙ A_m, K_m)          (paper Eq. 5–6)
/// with P_m ∈ R^{Lp×dim} the components, K_m ∈ R^dim their keys, A_m ∈ R^dim their attention vectors, γ the cosine
/// similarity and q(x) the frozen pretrained backbone's class-token feature of x with no prompt (as in L2P). The
/// components are split equally among <see cref="ClassifyOptions.ExpectedTasks"/> tasks: task t adds
/// Components / ExpectedTasks new (P, K, A); only those train during task t, while the earlier tasks' components
/// take part in the sum frozen (they are separate, no-gradient Parameters here, which is what the code's
/// `K[:s].detach()` achieves). A task beyond ExpectedTasks is refused: the number of components is fixed.
///
/// Prefix tuning (paper Sec. 4, "we insert prompts into layers 1-5"): blocks 0..min(4, depth − 1) each have their
/// own components; a block's prompt of length Lp is split into halves, the first Lp/2 tokens prefixed to that
/// block's attention keys and the last Lp/2 to its values. The class token's feature after the final LayerNorm
/// goes to the head, which the base class grows per task.
///
/// Orthogonality: the new task's P, K and A of each block start as a Gram-Schmidt pass over random normal vectors,
/// orthogonal to the frozen earlier components and to each other, at unit norm (P flattened to Lp·dim). The paper
/// (Sec. 4.2) motivates orthogonal components to reduce interference with the past; this per-task Gram-Schmidt
/// re-initialisation is what the authors' released code does (models/zoo.py, `gram_schmidt`, replacing the
/// orthogonal initialisation at the start that the paper used). Two things differ from that code: the earlier
/// components (no longer orthogonal to each other once trained) are first orthonormalised into a basis, so each
/// new vector is orthogonal to their span exactly rather than to each of them separately; and when that span
/// already fills the space (Components/ExpectedTasks·t > dim for K and A, e.g. 100 keys in a 64-wide ViT), where the
/// code would loop forever, the remaining new vectors are made orthogonal to the new task's others only, and once
/// those fill it too they are random unit vectors. The orthogonality penalty of their code (((T Tᵀ − I)²).mean()
/// on K, A and the flattened P, weighted by the third `--prompt_param`) is not included: with the Gram-Schmidt
/// version of the code, its ImageNet-R script (experiments/imagenet-r.sh) passes 0.0 for that weight ("with updated
/// code, now can be 0!"); an earlier CIFAR-100 script passed 0.1.
public sealed class CodaPromptLearner : ClassIncrementalLearner
{
    /// The paper's prompt length for CODA-Prompt (Lp = 8).
    public const int DefaultPromptLength = 8;

    /// Prompts go into the first five blocks (paper: layers 1-5), or all of a shallower ViT's.
    public const int MaxPromptedBlocks = 5;

    /// One task's components in one block.
    private sealed class Slice(Parameter prompts, Parameter keys, Parameter attention) : IDisposable
    {
        public Parameter Prompts { get; } = prompts;     // [c, Lp, dim]
        public Parameter Keys { get; } = keys;           // [c, dim]
        public Parameter Attention { get; } = attention; // [c, dim]

        public void Dispose()
        {
            Prompts.Dispose();
            Keys.Dispose();
            Attention.Dispose();
        }
    }

    private readonly List<Slice[]> _slices = []; // per task, per prompted block

    public CodaPromptLearner(VisionTransformer backbone, ClassifyOptions options) : base(backbone, Validated(options))
    {
        foreach (var p in backbone.parameters()) p.requires_grad = false;
    }

    /// Checked before the base class builds the head, so a refused option leaves nothing to dispose.
    private static ClassifyOptions Validated(ClassifyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ExpectedTasks < 1) throw new InputException($"ExpectedTasks (expected_tasks) {options.ExpectedTasks}: must be ≥ 1");
        if (options.Components < options.ExpectedTasks || options.Components % options.ExpectedTasks != 0)
            throw new InputException($"Components (components) {options.Components}: coda-prompt splits its components equally among ExpectedTasks (expected_tasks) = {options.ExpectedTasks} tasks, so it must be a positive multiple of it");
        int length = options.PromptLength ?? DefaultPromptLength;
        if (length < 2 || length % 2 != 0)
            throw new InputException($"PromptLength (prompt_length) {length}: coda-prompt splits each prompt into equal halves of prefix keys and values, so it must be even and ≥ 2");
        return options;
    }

    private const string Decided = "Components, ExpectedTasks, PromptLength and the backbone's width";

    public override string Method => "coda-prompt";

    /// Tokens per prompt (Lp; Lp/2 prefix keys and Lp/2 prefix values).
    public int PromptLength => Options.PromptLength ?? DefaultPromptLength;

    /// Components each task adds (per block).
    public int ComponentsPerTask => Options.Components / Options.ExpectedTasks;

    /// Blocks that get prefixes: 0..min(4, depth − 1).
    public int PromptedBlocks => Math.Min(MaxPromptedBlocks, Backbone.Config.Depth);

    /// Task slices of components so far.
    public int Slices => _slices.Count;

    /// Task `task`'s (0-based) components in block `block`: P [c, Lp, dim], K [c, dim], A [c, dim].
    public (Parameter Prompts, Parameter Keys, Parameter Attention) Components(int block, int task)
    {
        var s = _slices[task][block];
        return (s.Prompts, s.Keys, s.Attention);
    }

    /// Adds the new task's components, Gram-Schmidt-initialised against the frozen ones, and freezes the earlier.
    protected override void OnBeginTask(Generator? generator)
    {
        if (_slices.Count >= Options.ExpectedTasks)
            throw new InputException($"task {_slices.Count + 1}: coda-prompt divides its {Options.Components} components among ExpectedTasks (expected_tasks) = {Options.ExpectedTasks} tasks and has none left; start the run with a larger ExpectedTasks");
        foreach (var slice in _slices.SelectMany(s => s))
        {
            slice.Prompts.requires_grad = false;
            slice.Keys.requires_grad = false;
            slice.Attention.requires_grad = false;
        }
        var (dtype, device) = BackboneKind();
        long dim = Backbone.Config.EmbedDim;
        int c = ComponentsPerTask;
        var blocks = new Slice[PromptedBlocks];
        for (int b = 0; b < blocks.Length; b++)
        {
            using var scope = torch.NewDisposeScope();
            var prompts = GramSchmidt.NewOrthonormal(Earlier(b, s => s.Prompts), c, PromptLength * dim, generator).reshape(c, PromptLength, dim);
            var keys = GramSchmidt.NewOrthonormal(Earlier(b, s => s.Keys), c, dim, generator);
            var attention = GramSchmidt.NewOrthonormal(Earlier(b, s => s.Attention), c, dim, generator);
            blocks[b] = new Slice(
                Owned(new Parameter(prompts.to(dtype, device), requires_grad: true)),
                Owned(new Parameter(keys.to(dtype, device), requires_grad: true)),
                Owned(new Parameter(attention.to(dtype, device), requires_grad: true)));
        }
        _slices.Add(blocks);
    }

    /// The earlier tasks' components of one kind in block `block`, flattened to rows.
    private IReadOnlyList<Tensor> Earlier(int block, Func<Slice, Parameter> kind) =>
        [.. _slices.Select(s => kind(s[block]).detach().reshape(ComponentsPerTask, -1))];

    public override IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups()
    {
        if (_slices.Count == 0) throw new InvalidOperationException("coda-prompt trains after a task has begun");
        yield return ("prompts", [.. _slices[^1].SelectMany(s => new[] { s.Prompts, s.Keys, s.Attention })], Options.LearningRate);
        yield return ("head", [Head.Weight, Head.Bias], Options.HeadLearningRate);
    }

    /// The query q(x): the frozen backbone's class-token feature with no prompt [B, dim] (no gradient).
    public Tensor Query(Tensor images)
    {
        using var noGrad = torch.no_grad();
        return Backbone.Features(images);
    }

    /// α [B, m] over every component so far in block `block`: α_m = γ(q ⊙ A_m, K_m), γ the cosine similarity.
    public Tensor Alphas(Tensor query, int block)
    {
        using var scope = torch.NewDisposeScope();
        var (_, keys, attention) = Stacked(block);
        return Alphas(query, keys, attention).MoveToOuterDisposeScope();
    }

    private static Tensor Alphas(Tensor query, Tensor keys, Tensor attention)
    {
        using var scope = torch.NewDisposeScope();
        var attended = query.unsqueeze(1).mul(attention.unsqueeze(0)); // q ⊙ A_m, [B, m, dim]
        var cosines = nn.functional.normalize(attended, dim: 2).mul(nn.functional.normalize(keys, dim: 1).unsqueeze(0)).sum(2);
        return cosines.MoveToOuterDisposeScope();
    }

    /// Block `block`'s prompt p = Σ_m α_m P_m [B, Lp, dim].
    public Tensor Prompt(Tensor query, int block)
    {
        using var scope = torch.NewDisposeScope();
        var (prompts, keys, attention) = Stacked(block);
        long m = prompts.shape[0], dim = Backbone.Config.EmbedDim;
        var alphas = Alphas(query, keys, attention);
        var prompt = alphas.matmul(prompts.reshape(m, PromptLength * dim)).reshape(query.shape[0], PromptLength, dim);
        return prompt.MoveToOuterDisposeScope();
    }

    /// Every task's components in block `block`, stacked: P [m, Lp, dim], K [m, dim], A [m, dim]. The earlier
    /// tasks' are frozen Parameters, so only the current task's take gradient.
    private (Tensor Prompts, Tensor Keys, Tensor Attention) Stacked(int block)
    {
        if (_slices.Count == 0) throw new InvalidOperationException("coda-prompt has no components before its first task");
        using var scope = torch.NewDisposeScope();
        var slices = _slices.Select(s => s[block]).ToList();
        var prompts = torch.cat([.. slices.Select(s => (Tensor)s.Prompts)], 0);
        var keys = torch.cat([.. slices.Select(s => (Tensor)s.Keys)], 0);
        var attention = torch.cat([.. slices.Select(s => (Tensor)s.Attention)], 0);
        return (prompts.MoveToOuterDisposeScope(), keys.MoveToOuterDisposeScope(), attention.MoveToOuterDisposeScope());
    }

    /// The class-token feature with every prompted block's prefix keys (first Lp/2 tokens) and values (last Lp/2).
    private Tensor PromptedFeatures(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var query = Query(images);
        int half = PromptLength / 2;
        var prefixes = new (Tensor Keys, Tensor Values)[PromptedBlocks];
        for (int b = 0; b < prefixes.Length; b++)
        {
            var prompt = Prompt(query, b);
            prefixes[b] = (prompt.narrow(1, 0, half), prompt.narrow(1, half, half));
        }
        var features = Backbone.Features(images, null, b => b < prefixes.Length ? prefixes[b] : null);
        return features.MoveToOuterDisposeScope();
    }

    protected override (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images) => (PromptedFeatures(images), null);

    public override Tensor Predict(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var features = PromptedFeatures(images);
        return Head.call(features).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> State()
    {
        var state = base.State();
        using var scope = torch.NewDisposeScope();
        state["coda.tasks"] = torch.tensor(new long[] { _slices.Count }).MoveToOuterDisposeScope();
        for (int t = 0; t < _slices.Count; t++)
            for (int b = 0; b < _slices[t].Length; b++)
            {
                var s = _slices[t][b];
                state[Key(b, t, "prompts")] = s.Prompts.detach().clone().MoveToOuterDisposeScope();
                state[Key(b, t, "keys")] = s.Keys.detach().clone().MoveToOuterDisposeScope();
                state[Key(b, t, "attention")] = s.Attention.detach().clone().MoveToOuterDisposeScope();
            }
        return state;
    }

    private static string Key(int block, int task, string kind) => $"coda.blocks.{block}.task{task}.{kind}";

    protected override void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state)
    {
        var count = Required(state, "coda.tasks");
        if (count.numel() != 1) throw new InputException($"'coda.tasks' has {count.numel()} values, expected 1");
        long tasks;
        using (torch.NewDisposeScope()) tasks = count.to(ScalarType.Int64).item<long>();
        if (tasks != Tasks)
            throw new InputException($"the saved state has coda-prompt components of {tasks} tasks, the run lists {Tasks}");
        if (tasks > Options.ExpectedTasks)
            throw new InputException($"the saved state has components of {tasks} tasks, more than ExpectedTasks (expected_tasks) = {Options.ExpectedTasks}");
        var (dtype, device) = BackboneKind();
        long dim = Backbone.Config.EmbedDim, c = ComponentsPerTask;
        for (int t = 0; t < tasks; t++) // every tensor checked before any is kept, so a bad file leaves nothing half-built
            for (int b = 0; b < PromptedBlocks; b++)
            {
                Expect(state, Key(b, t, "prompts"), [c, PromptLength, dim], Decided);
                Expect(state, Key(b, t, "keys"), [c, dim], Decided);
                Expect(state, Key(b, t, "attention"), [c, dim], Decided);
            }
        DisposeSlices();
        for (int t = 0; t < tasks; t++)
        {
            var blocks = new Slice[PromptedBlocks];
            for (int b = 0; b < blocks.Length; b++)
            {
                using var scope = torch.NewDisposeScope();
                blocks[b] = new Slice(
                    Frozen(Expect(state, Key(b, t, "prompts"), [c, PromptLength, dim], Decided), dtype, device),
                    Frozen(Expect(state, Key(b, t, "keys"), [c, dim], Decided), dtype, device),
                    Frozen(Expect(state, Key(b, t, "attention"), [c, dim], Decided), dtype, device));
            }
            _slices.Add(blocks);
        }
    }

    /// A restored slice: frozen (only a new task's components train), like every finished task's.
    private static Parameter Frozen(Tensor saved, ScalarType dtype, Device device) =>
        Owned(new Parameter(saved.detach().to(dtype, device).clone(), requires_grad: false));

    private void DisposeSlices()
    {
        foreach (var slice in _slices.SelectMany(s => s)) slice.Dispose();
        _slices.Clear();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) DisposeSlices();
        base.Dispose(disposing);
    }

    /// Gram-Schmidt initialisation of new components against frozen ones, in double precision on the CPU.
    internal static class GramSchmidt
    {
        /// Below this fraction of its length a vector's remainder counts as zero (it lies in the span).
        private const double Vanishing = 1e-6;

        /// `count` unit rows of length `n` [count, n] (float32): random normal vectors made orthogonal to the span
        /// of the rows of `earlier` (each [k, n]) and to each other. When the earlier rows and the new ones already
        /// fill R^n, a further vector is made orthogonal to the new ones only; when the new ones alone fill it, it
        /// is a random unit vector.
        public static Tensor NewOrthonormal(IReadOnlyList<Tensor> earlier, int count, long n, Generator? generator)
        {
            using var scope = torch.NewDisposeScope();
            var basis = new List<double[]>();   // orthonormal basis of span(earlier ∪ new so far)
            foreach (var rows in earlier)
            {
                var values = rows.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
                for (int r = 0; r < rows.shape[0]; r++)
                {
                    var v = values.AsSpan(checked((int)(r * n)), (int)n).ToArray();
                    double length = Norm(v);
                    if (length == 0) continue;
                    ProjectOut(v, basis);
                    if (Norm(v) > Vanishing * length) basis.Add(Scaled(v, 1 / Norm(v)));
                }
            }
            var draws = torch.randn([count, n], dtype: ScalarType.Float64, generator: generator).data<double>().ToArray();
            var fresh = new List<double[]>();   // the new task's vectors (orthonormal)
            var result = new float[count * n];
            for (int k = 0; k < count; k++)
            {
                var v0 = draws.AsSpan(checked((int)(k * n)), (int)n).ToArray();
                double length = Norm(v0);
                var v = (double[])v0.Clone();
                ProjectOut(v, basis);
                if (Norm(v) > Vanishing * length)
                {
                    var u = Scaled(v, 1 / Norm(v));
                    basis.Add(u);
                    fresh.Add(u);
                    Write(result, k, u);
                    continue;
                }
                v = (double[])v0.Clone();        // the space is full: orthogonal to this task's new vectors only
                ProjectOut(v, fresh);
                if (Norm(v) > Vanishing * length)
                {
                    var u = Scaled(v, 1 / Norm(v));
                    fresh.Add(u);
                    Write(result, k, u);
                }
                else Write(result, k, Scaled(v0, 1 / length));
            }
            return torch.tensor(result, [count, n]).MoveToOuterDisposeScope();
        }

        /// v minus its projection on the orthonormal `basis`, twice over (re-orthogonalisation keeps the result
        /// orthogonal to working precision).
        private static void ProjectOut(double[] v, List<double[]> basis)
        {
            for (int pass = 0; pass < 2; pass++)
                foreach (var u in basis)
                {
                    double dot = 0;
                    for (int i = 0; i < v.Length; i++) dot += v[i] * u[i];
                    for (int i = 0; i < v.Length; i++) v[i] -= dot * u[i];
                }
        }

        private static double Norm(double[] v)
        {
            double s = 0;
            foreach (var x in v) s += x * x;
            return Math.Sqrt(s);
        }

        private static double[] Scaled(double[] v, double by) => [.. v.Select(x => x * by)];

        private static void Write(float[] into, int row, double[] v)
        {
            for (int i = 0; i < v.Length; i++) into[row * v.Length + i] = (float)v[i];
        }
    }
}
