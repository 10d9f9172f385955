using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// A frozen Linear plus a dense trainable delta, for Custom Diffusion (Kumari et al., CVPR 2023), which fine-tunes the
/// full key/value projection weights of every cross-attention:
///
///     W_t = W_init + P + D,    P = the frozen past (Σ of the earlier tasks' deltas, or zeros), D trainable, D₀ = 0
///
/// Training D from zero is training W itself from W_init + P (the same gradients; AdamW's weight decay pulls D, i.e.
/// W towards W_init + P, where Custom Diffusion's pulls W towards zero), and the adapter file gets D directly. W_init + P is cached as one merged weight, as in ContinualLoraLinear.
///
/// Parameter names are `weight` (the base Linear's own Parameter, frozen), `bias` when the base has one, and `delta`.
public sealed class DenseDeltaLinear : nn.Module<Tensor, Tensor>, IAdaptedLinear
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly Parameter delta;
    private readonly FrozenState _frozen;

    /// Tensors that are state but not parameters (RegisterComponents would register a Tensor field as a buffer).
    private sealed class FrozenState
    {
        public required Linear Base;
        public required Tensor Past;    // [out, in]
        public required Tensor Merged;  // W_init + Past, [out, in]
    }

    public string LayerName { get; }
    public long InFeatures { get; }
    public long OutFeatures { get; }
    public Linear Base => _frozen.Base;
    public Parameter Delta => delta;
    public Tensor PastDelta => _frozen.Past;

    /// Wraps `baseLayer` (frozen from now on). `pastDelta` ([out, in]) is copied; null means zeros.
    public DenseDeltaLinear(string layerName, Linear baseLayer, Tensor? pastDelta = null) : base(nameof(DenseDeltaLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        if (string.IsNullOrWhiteSpace(layerName)) throw new ArgumentException("layer name must not be empty", nameof(layerName));
        var w = baseLayer.weight ?? throw new ArgumentException($"{layerName}: the base Linear has no weight");
        if (w.dim() != 2) throw new ArgumentException($"{layerName}: base weight must be [out, in], got [{string.Join(", ", w.shape)}]");
        LayerName = layerName;
        OutFeatures = w.shape[0];
        InFeatures = w.shape[1];
        weight = w;
        bias = baseLayer.bias;
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;

        if (pastDelta is not null && !pastDelta.shape.SequenceEqual(w.shape))
            throw new ArgumentException($"{layerName}: past delta has shape [{string.Join(", ", pastDelta.shape)}], the weight is [{OutFeatures}, {InFeatures}]");
        using (torch.NewDisposeScope())
        using (torch.no_grad())
        {
            delta = new Parameter(torch.zeros(OutFeatures, InFeatures, dtype: ComputePrecision.TrainableFor(w.dtype), device: w.device), requires_grad: true);
            delta.DetachFromDisposeScope();
            Tensor past;
            if (pastDelta is null) past = torch.zeros_like(w);
            else past = pastDelta.detach().to(w.dtype, w.device).clone();
            var merged = w.detach().Plus(past);
            _frozen = new FrozenState { Base = baseLayer, Past = past.DetachFromDisposeScope(), Merged = merged.DetachFromDisposeScope() };
        }
        RegisterComponents();
    }

    /// y = x (W_init + P + D)ᵀ (+ bias). With half-precision weights D (float32) is applied as its own float32 matmul,
    /// so updates far below the weights' precision still change the output.
    public override Tensor forward(Tensor x)
    {
        if (delta.dtype == _frozen.Merged.dtype)
        {
            using var w = _frozen.Merged.Plus(delta);
            return nn.functional.linear(x, w, bias);
        }
        using var frozen = nn.functional.linear(x, _frozen.Merged, bias);
        using var x32 = x.to(delta.dtype);
        using var d32 = nn.functional.linear(x32, delta);
        using var back = d32.to(frozen.dtype);
        return frozen.Plus(back);
    }

    public IEnumerable<(string Suffix, Parameter Value)> NamedTrainableParameters()
    {
        yield return ("delta", delta);
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
