using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// C-LoRA's self-regularisation (Smith et al., TMLR 2024): penalise the current task's delta where the
/// past tasks already changed the weight,
///
///     penalty = Σ_layers ‖ |P| ⊙ (A·B) ‖²_F,   P = Σ_{t'<t} A_{t'} B_{t'}
///
/// The training loss is diffusion MSE + λ · penalty; `--method lora` is λ = 0. At task 1 every P is zero, so
/// the penalty is exactly zero; such layers are skipped rather than multiplied by zero.
public static class SelfRegularizer
{
    /// The summed penalty as a scalar tensor, differentiable w.r.t. the current factors (a constant zero when
    /// no layer has a past delta). Cost per layer is one [out, r]·[r, in] product and a few element-wise ops on
    /// [out, in], independent of how many tasks came before.
    public static Tensor Penalty(IEnumerable<ContinualLoraLinear> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        Tensor? total = null;
        Device? device = null;
        foreach (var layer in layers)
        {
            device ??= layer.PastDelta.device;
            if (layer.PastDeltaIsZero) continue;
            var term = LayerPenalty(layer);
            if (total is null) total = term;
            else
            {
                var sum = total.Plus(term);
                total.Dispose();
                term.Dispose();
                total = sum;
            }
        }
        return total ?? torch.zeros(Array.Empty<long>(), ScalarType.Float32, device ?? torch.CPU);
    }

    /// ‖ |P| ⊙ (A·B) ‖²_F for one layer.
    public static Tensor LayerPenalty(ContinualLoraLinear layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        using var delta = layer.CurrentDelta();
        using var absPast = layer.PastDelta.abs();
        using var weighted = absPast.mul(delta);
        using var squared = weighted.Squared();
        return squared.sum();
    }
}
