using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// A frozen Linear layer plus the C-LoRA adapter of the task being trained:
///
///     W_t = W_init + P + A·B,    P = Σ_{t'<t} A_{t'} B_{t'}  (frozen, one dense [out, in] tensor)
///
/// `lora_A` is [out, r] (the up / output-side factor) and `lora_B` is [r, in] (the down / input-side factor),
/// so A·B has the weight's shape [out, in]. Initialisation follows standard LoRA: the up factor A starts at
/// ZERO (so a fresh adapter is an exact zero delta and the model starts from the merged past), the down factor
/// B is kaiming-uniform with a = √5, i.e. U(-1/√in, 1/√in) (what torch.nn.Linear and peft use). There is no
/// alpha/r scaling: the delta is exactly A·B, so the forgetting penalty, the saved factors and the merge all
/// talk about the same matrix.
///
/// Per-step cost does not depend on the number of past tasks: W_init + P is cached as ONE merged weight, so
/// forward is one dense matmul for everything frozen plus the rank-r path for the current task.
///
/// Parameter names are `weight` (the base Linear's own Parameter, shared, frozen), `bias` when the base has
/// one, `lora_A` and `lora_B`: inside a UNet the keys read `...attn2.to_k.weight` (unchanged, as in the
/// diffusers checkpoint) and `...attn2.to_k.lora_A` (as in the adapter file). The past delta and the merged
/// cache are deliberately neither parameters nor buffers (they must not appear in a state dict and must not
/// train); they live in a holder object so TorchSharp's RegisterComponents, which registers every Tensor field
/// it finds as a buffer, does not see them.
public sealed class ContinualLoraLinear : nn.Module<Tensor, Tensor>, IAdaptedLinear
{
    // Field names are the registered parameter names (RegisterComponents uses them). Every other piece of state
    // lives in _frozen: RegisterComponents registers any Module / Tensor field (auto-property backing fields too).
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly Parameter lora_A;
    private readonly Parameter lora_B;
    private readonly FrozenState _frozen;

    /// Tensors that are state but not parameters: kept out of RegisterComponents' reach on purpose.
    private sealed class FrozenState
    {
        public required Linear Base;
        public required Tensor Past;     // Σ past tasks' A·B, [out, in]
        public required Tensor Merged;   // W_init + Past, [out, in]; rebuilt if the weight moves device/dtype
        public required bool PastIsZero { get; set; }
    }

    /// Name of the adapted layer in the model, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k".
    public string LayerName { get; }
    public int Rank { get; }
    public long InFeatures { get; }
    public long OutFeatures { get; }

    /// The replaced Linear (its weight Parameter is this module's `weight`, frozen). Held in the holder object,
    /// not as a field, so it is not registered as a second submodule.
    public Linear Base => _frozen.Base;

    public Parameter LoraA => lora_A;
    public Parameter LoraB => lora_B;

    /// The frozen sum of the past tasks' deltas, [out, in] (zeros at task 1). One tensor whatever the task count.
    public Tensor PastDelta
    {
        get
        {
            FrozenMergedWeight(); // keeps Past on the weight's device/dtype
            return _frozen.Past;
        }
    }

    /// True when no past task contributed (task 1, or method without past): the penalty is skipped.
    public bool PastDeltaIsZero => _frozen.PastIsZero;

    /// Wraps `baseLayer` (which is frozen: its weight and bias stop requiring grad). `pastDelta` ([out, in]) is
    /// copied; null means task 1 (zeros). `generator` makes B's initialisation reproducible.
    public ContinualLoraLinear(string layerName, Linear baseLayer, int rank, Tensor? pastDelta = null, Generator? generator = null)
        : base(nameof(ContinualLoraLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        if (string.IsNullOrWhiteSpace(layerName)) throw new ArgumentException("layer name must not be empty", nameof(layerName));
        var w = baseLayer.weight ?? throw new ArgumentException($"{layerName}: the base Linear has no weight");
        if (w.dim() != 2) throw new ArgumentException($"{layerName}: base weight must be [out, in], got [{string.Join(", ", w.shape)}]");
        OutFeatures = w.shape[0];
        InFeatures = w.shape[1];
        if (rank < 1 || rank > Math.Min(OutFeatures, InFeatures))
            throw new ArgumentOutOfRangeException(nameof(rank), $"{layerName}: rank {rank} must be in 1..{Math.Min(OutFeatures, InFeatures)} for a [{OutFeatures}, {InFeatures}] weight");

        LayerName = layerName;
        Rank = rank;
        weight = w;
        bias = baseLayer.bias;
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;

        var trainable = ComputePrecision.TrainableFor(w.dtype); // float32 factors next to bf16/fp16 weights
        lora_A = Owned(new Parameter(torch.zeros(OutFeatures, rank, dtype: trainable, device: w.device), requires_grad: true));
        lora_B = Owned(new Parameter(KaimingUniformDown(rank, InFeatures, trainable, w.device, generator), requires_grad: true));
        _frozen = BuildFrozenState(baseLayer, pastDelta);
        RegisterComponents();
    }

    /// The module's state must outlive whatever dispose scope it was built (or lazily rebuilt) in.
    private static T Owned<T>(T tensor) where T : Tensor
    {
        tensor.DetachFromDisposeScope();
        return tensor;
    }

    private static bool SameStorage(Tensor a, Tensor b) =>
        a.device_type == b.device_type && a.device_index == b.device_index && a.dtype == b.dtype;

    /// U(-1/√in, 1/√in): kaiming_uniform_(a=√5) for a [r, in] matrix, drawn on the CPU so a CPU generator works
    /// for any target device.
    private static Tensor KaimingUniformDown(int rank, long inFeatures, ScalarType dtype, Device device, Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        double bound = 1.0 / Math.Sqrt(inFeatures);
        var u = torch.rand(new long[] { rank, inFeatures }, dtype: ScalarType.Float32, generator: generator);
        return u.Times(2 * bound).Minus(bound).to(dtype, device).MoveToOuterDisposeScope();
    }

    private FrozenState BuildFrozenState(Linear baseLayer, Tensor? pastDelta)
    {
        using var scope = torch.NewDisposeScope(); // temporaries only: the kept tensors are detached by Owned
        using var noGrad = torch.no_grad();
        Tensor past;
        if (pastDelta is null)
        {
            past = torch.zeros_like(weight);
        }
        else
        {
            if (!pastDelta.shape.SequenceEqual(weight.shape))
                throw new ArgumentException($"{LayerName}: past delta has shape [{string.Join(", ", pastDelta.shape)}], the weight is [{OutFeatures}, {InFeatures}]");
            past = pastDelta.detach().to(weight.dtype, weight.device).clone();
        }
        bool isZero = past.count_nonzero().item<long>() == 0;
        return new FrozenState { Base = baseLayer, Past = Owned(past), Merged = MergeFrozen(past), PastIsZero = isZero };
    }

    private Tensor MergeFrozen(Tensor past)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return Owned(weight.detach().Plus(past));
    }

    /// Recomputes the cached W_init + P. Needed only if the base weight is changed in place after injection
    /// (device and dtype moves are picked up automatically).
    public void RefreshMergedWeight()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var oldMerged = _frozen.Merged;
        if (!SameStorage(_frozen.Past, weight))
        {
            var oldPast = _frozen.Past;
            _frozen.Past = Owned(oldPast.to(weight.dtype, weight.device));
            if (!ReferenceEquals(oldPast, _frozen.Past)) oldPast.Dispose();
        }
        _frozen.Merged = MergeFrozen(_frozen.Past);
        oldMerged.Dispose();
    }

    /// Module.to(device) moves parameters but not our frozen tensors: follow the weight lazily.
    private Tensor FrozenMergedWeight()
    {
        if (!SameStorage(_frozen.Merged, weight)) RefreshMergedWeight();
        return _frozen.Merged;
    }

    /// y = x (W_init + P)ᵀ + (x Bᵀ) Aᵀ (+ bias): one dense matmul for all frozen weights, then the rank-r path. With
    /// half-precision weights the rank-r path runs in the factors' float32 and its result joins in the weights' dtype.
    public override Tensor forward(Tensor x)
    {
        using var frozen = nn.functional.linear(x, FrozenMergedWeight(), bias);
        if (x.dtype == lora_B.dtype)
        {
            using var down = nn.functional.linear(x, lora_B);
            using var up = nn.functional.linear(down, lora_A);
            return frozen.Plus(up);
        }
        using var x32 = x.to(lora_B.dtype);
        using var down32 = nn.functional.linear(x32, lora_B);
        using var up32 = nn.functional.linear(down32, lora_A);
        using var upBack = up32.to(frozen.dtype);
        return frozen.Plus(upBack);
    }

    /// The current task's delta A·B, [out, in], differentiable w.r.t. A and B (used by the penalty).
    public Tensor CurrentDelta() => lora_A.matmul(lora_B);

    /// W_init + P + A·B, detached: the weight this layer currently behaves as.
    public Tensor MergedWeight()
    {
        using var noGrad = torch.no_grad();
        using var delta = CurrentDelta();
        return FrozenMergedWeight().Plus(delta);
    }

    /// Moves on to the next task in place: the current delta A·B joins the frozen past (P ← P + A·B), A restarts at
    /// zero and B at a fresh kaiming-uniform draw, exactly as a newly built layer over the new past would start. Used
    /// where one model learns task after task in memory (the classification ViT); the diffusion trainer builds fresh
    /// layers from the adapter files instead.
    public void StartNextTask(Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        FrozenMergedWeight(); // the past follows the weight's device and dtype first
        var oldPast = _frozen.Past;
        using (var delta = CurrentDelta())
            _frozen.Past = Owned(oldPast.Plus(delta));
        oldPast.Dispose();
        _frozen.PastIsZero = _frozen.Past.count_nonzero().item<long>() == 0;
        var oldMerged = _frozen.Merged;
        _frozen.Merged = MergeFrozen(_frozen.Past);
        oldMerged.Dispose();
        lora_A.zero_();
        lora_B.copy_(KaimingUniformDown(Rank, InFeatures, lora_B.dtype, lora_B.device, generator));
    }

    /// The parameters the optimiser should see: the current task's factors only.
    public IEnumerable<Parameter> TrainableParameters()
    {
        yield return lora_A;
        yield return lora_B;
    }

    public IEnumerable<(string Suffix, Parameter Value)> NamedTrainableParameters()
    {
        yield return ("lora_A", lora_A);
        yield return ("lora_B", lora_B);
    }

    /// Replaces the down factor B's values (an initialisation, e.g. ortho-init's; before training starts).
    public void ResetDown(Tensor down)
    {
        if (!down.shape.SequenceEqual(lora_B.shape))
            throw new ArgumentException($"{LayerName}: down factor must be [{string.Join(", ", lora_B.shape)}], got [{string.Join(", ", down.shape)}]");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        lora_B.copy_(down.to(lora_B.dtype, lora_B.device));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _frozen.Past.Dispose();
            _frozen.Merged.Dispose();
        }
        base.Dispose(disposing);
    }
}
