using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// C-LoRA in the ViT (Smith et al., TMLR 2024, Sec. 6) and its λ = 0 ablation `lora`, with the same layer and
/// penalty as the diffusion side (Lora/ContinualLoraLinear, Lora/SelfRegularizer): every block's fused `attn.qkv`
/// projection W becomes W + P + A·B, where P = Σ of the past tasks' A·B is frozen and A·B is the current task's
/// rank-r delta, and the loss adds λ ‖ |P| ⊙ (A·B) ‖²_F summed over the layers. At the end of a task its A·B
/// joins P; the head's new rows train with the factors.
///
/// Why qkv: in self-attention the queries, keys and values all read the image tokens (unlike the diffusion
/// UNet's cross-attention, where only the keys and values read the new concept's text), so all three carry what
/// a task changes; timm's ViT fuses them into one Linear, which the adapter wraps whole. The MLPs and the
/// output projections stay frozen.
public sealed class LoraLearner : ClassIncrementalLearner
{
    private readonly bool _penalised;
    private readonly List<ContinualLoraLinear> _layers = [];
    private readonly Dictionary<string, Tensor> _past = new(StringComparer.Ordinal); // Σ past A·B per layer
    private readonly Dictionary<string, Linear> _base = new(StringComparer.Ordinal);  // the original projections

    public LoraLearner(VisionTransformer backbone, ClassifyOptions options, bool penalised) : base(backbone, Validated(backbone, options, penalised))
    {
        _penalised = penalised;
        foreach (var p in backbone.parameters()) p.requires_grad = false;
        for (int i = 0; i < backbone.Blocks.Count; i++) _base[LayerName(i)] = (Linear)backbone.Blocks[i].Attention.Qkv;
    }

    /// Checked before the base class builds the head, so a refused option leaves nothing to dispose.
    private static ClassifyOptions Validated(VisionTransformer backbone, ClassifyOptions options, bool penalised)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(options);
        if (penalised && !(options.Lambda >= 0 && double.IsFinite(options.Lambda))) throw new InputException($"--lambda {options.Lambda}: must be a finite number ≥ 0");
        for (int i = 0; i < backbone.Blocks.Count; i++)
            if (backbone.Blocks[i].Attention.Qkv is not Linear)
                throw new InvalidOperationException($"blocks.{i}.attn.qkv already carries an adapter (one LoRA learner per backbone)");
        return options;
    }

    public override string Method => _penalised ? "clora" : "lora";

    public static string LayerName(int block) => $"blocks.{block}.attn.qkv";

    public IReadOnlyList<ContinualLoraLinear> Layers => _layers;

    /// Σ of the finished tasks' deltas of layer `name` ([3·dim, dim]; absent before the first task ends).
    public Tensor? PastDelta(string name) => _past.GetValueOrDefault(name);

    /// Task 1 (or the first task after a restore) puts an adapter on every qkv over the past so far; each later task
    /// folds the finished task's A·B into the layers' frozen past and restarts the factors (the adapters stay in the
    /// backbone, which owns them from then on).
    protected override void OnBeginTask(Generator? generator)
    {
        if (_layers.Count == 0) Inject(generator);
        else foreach (var layer in _layers) layer.StartNextTask(generator);
    }

    private void Inject(Generator? generator)
    {
        var targets = Enumerable.Range(0, Backbone.Blocks.Count).Select(i =>
        {
            var attention = Backbone.Blocks[i].Attention;
            return new LoraTarget(LayerName(i), _base[LayerName(i)], m => attention.ReplaceQkv(m));
        }).ToList();
        _layers.AddRange(LoraInjector.Inject(targets, Options.Rank, _past.Count == 0 ? null : _past, generator));
    }

    public override IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups()
    {
        yield return ("lora", [.. LoraInjector.TrainableParameters(_layers)], Options.LearningRate);
        yield return ("head", [Head.Weight, Head.Bias], Options.HeadLearningRate);
    }

    protected override (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images)
    {
        var features = Backbone.Features(images);
        if (!_penalised || _past.Count == 0 || Options.Lambda == 0) return (features, null);
        using var penalty = SelfRegularizer.Penalty(_layers);
        return (features, penalty.Times(Options.Lambda));
    }

    public override Tensor Predict(Tensor images)
    {
        using var features = Backbone.Features(images);
        return Head.call(features);
    }

    /// The task's A·B joins the frozen past.
    public override void EndTask(Func<IEnumerable<(Tensor Images, Tensor Columns)>> taskTrain)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var layer in _layers)
        {
            var delta = layer.CurrentDelta().detach();
            var sum = _past.TryGetValue(layer.LayerName, out var old) ? old.Plus(delta) : delta.clone();
            sum.DetachFromDisposeScope();
            old?.Dispose();
            _past[layer.LayerName] = sum;
        }
    }

    public override Dictionary<string, Tensor> State()
    {
        var state = base.State();
        foreach (var (name, delta) in _past) state[$"{name}.past_delta"] = Copy(delta);
        return state;
    }

    protected override void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var scope = torch.NewDisposeScope();
        for (int i = 0; i < Backbone.Blocks.Count; i++)
        {
            var key = $"{LayerName(i)}.past_delta";
            var w = _base[LayerName(i)].weight!;
            var delta = Required(state, key);
            if (!delta.shape.SequenceEqual(w.shape))
                throw new InputException($"'{key}' is [{string.Join(", ", delta.shape)}], the layer is [{string.Join(", ", w.shape)}]");
            _past[LayerName(i)] = delta.detach().to(w.dtype, w.device).clone().DetachFromDisposeScope();
        }
        // Adapters over the restored past with A = 0, so Predict sees W + P; the next BeginTask starts fresh factors.
        Inject(null);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // The adapters are submodules of the backbone now and are disposed with it.
            foreach (var t in _past.Values) t.Dispose();
            _past.Clear();
        }
        base.Dispose(disposing);
    }
}
