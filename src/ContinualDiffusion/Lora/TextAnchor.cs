using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// cdiff's own regulariser (`--method anchored-lora`), aimed at C-LoRA's two measured weaknesses: its element-wise
/// penalty also holds back the new concept (Jha et al., ICLR 2025: it drives the new weights towards zero), and it
/// protects only the earlier adapters, not the base model's own prompts. A key/value projection matters only through
/// what it outputs for the text features it is given, so penalise the change of exactly those outputs:
///
///     penalty = Σ_layers Σ_groups (1 / n_g) ‖ (A·B) C_gᵀ ‖²_F
///
/// with C_g [n_g, in] the text-encoder features of one group of prompts: the past concepts' prompts (from their
/// token on) and generic regularisation captions (the base model's own behaviour). Directions of the input space no
/// anchored prompt uses (the new token's own features, where they differ) cost nothing, whatever the magnitude of the
/// past deltas; no image is kept, only text features. The groups are averaged separately so a handful of past-concept
/// rows is not drowned by hundreds of caption rows. Owns its feature tensors (dispose it).
public sealed class TextAnchor : IDisposable
{
    private readonly List<Tensor> _groups;

    /// `groups`: [n_g, in] feature matrices (copied; empty groups are skipped).
    public TextAnchor(IEnumerable<Tensor> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        using var noGrad = torch.no_grad();
        _groups = [.. groups.Where(g => g.shape[0] > 0).Select(g =>
        {
            if (g.dim() != 2) throw new ArgumentException($"anchor features must be [rows, in], got [{string.Join(", ", g.shape)}]");
            return g.detach().clone().DetachFromDisposeScope();
        })];
    }

    public int GroupCount => _groups.Count;

    /// The summed penalty as a scalar tensor, differentiable w.r.t. the current factors.
    public Tensor Penalty(IEnumerable<ContinualLoraLinear> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        using var scope = torch.NewDisposeScope();
        Tensor? total = null;
        foreach (var layer in layers)
            foreach (var c in _groups)
            {
                using var features = c.to(layer.LoraB.dtype, layer.LoraB.device);
                if (features.shape[1] != layer.InFeatures)
                    throw new ArgumentException($"{layer.LayerName}: anchor features have width {features.shape[1]}, the layer reads {layer.InFeatures}");
                var down = layer.LoraB.matmul(features.t());   // [r, n]: cheap side first
                var moved = layer.LoraA.matmul(down);          // [out, n] = (A·B) Cᵀ
                var term = moved.Squared().sum().DividedBy(features.shape[0]);
                total = total is null ? term : total.Plus(term);
            }
        return (total ?? torch.zeros(Array.Empty<long>(), ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var g in _groups) g.Dispose();
    }
}
