using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Import;

/// Merges opened foreign LoRAs into a model's weights in place, W ← W + factor · up·down, once before sampling, so
/// sampling then costs what the plain model costs (as DeltaMerger does for a run's own adapters, which with `--run`
/// are already merged: the foreign deltas go on top). Each product is accumulated in float32 (float64 for a float64
/// weight) from zeros with `addmm_`, the operation DeltaMerger uses, so a LoRA holding exactly a run's factors at scale
/// 1 merges bit for bit what `sample --run` merges; then cast to the weight's dtype and added. Conv deltas are formed
/// over the flattened kernel (up [out, r] · down [r, in·kh·kw]), which is kohya's 1×1 squeeze-matmul and equals its
/// `conv2d(down.permute(1, 0, 2, 3), up)` for a 3×3 down with a 1×1 up (kohya-ss/sd-scripts `networks/lora.py`
/// LoRAInfModule.merge_to).
public static class ForeignLoraApplier
{
    /// Merges every module of every LoRA, in the order given. Returns the number of weights changed.
    public static int Apply(StableDiffusion model, IEnumerable<ForeignLora> loras)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loras);
        using var scope = torch.NewDisposeScope(); // any wrappers the module enumeration makes
        var weights = new Dictionary<LoraComponent, Dictionary<string, Tensor>>
        {
            [LoraComponent.Unet] = LoraTargets.Weights(model.Unet),
            [LoraComponent.TextEncoder] = LoraTargets.Weights(model.TextEncoder),
        };
        int changed = 0;
        foreach (var lora in loras)
            foreach (var m in lora.Plan.Modules)
            {
                var w = weights[m.Component][m.Path];
                MergeModule(w, lora, m, lora.Factors[m.Name]);
                changed++;
            }
        return changed;
    }

    /// W ← W + factor · up·down for one module.
    public static void MergeModule(Tensor weight, ForeignLora lora, LoraModule module, double factor)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(lora);
        ArgumentNullException.ThrowIfNull(module);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var acc = weight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var up = lora.Read(module.UpKey).to(acc, weight.device).reshape(module.DeltaShape[0], module.Rank);
        var down = lora.Read(module.DownKey).to(acc, weight.device).reshape(module.Rank, -1);
        var delta = torch.zeros([up.shape[0], down.shape[1]], acc, weight.device);
        delta.addmm_(up, down);
        if (factor != 1) delta.MultiplyInPlace(factor);
        weight.AddInPlace(delta.reshape(weight.shape).to(weight.dtype));
    }
}
