using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Lora;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// The run's model as one original-LDM single file (the form A1111, Forge and ComfyUI load from models/Stable-diffusion
/// or models/checkpoints): the base model's three networks, from a diffusers folder or a single file alike
/// (ModelTensors), with the tasks' summed deltas merged into the UNet's cross-attention K/V weights, written by
/// LdmSingleFileWriter under the LDM keys cdiff's own single-file reader maps back.
///
/// The merge is `--format merged`'s: RunWeightDeltas (the run's method's composition) on the weights as `cdiff sample --run` reads them (float32,
/// half precision upcast), so the merged weights are the ones sampling uses; they are written in float32, every other
/// tensor in its stored dtype, bit for bit. The concept tokens cannot go into a checkpoint (it has no tokenizer);
/// the export writes them beside it as embedding files.
public static class MergedSingleFileExport
{
    /// Writes the file at `outPath` (atomically). With no adapters the base model is written unchanged.
    public static void Write(string outPath, BaseModelSource source, IReadOnlyList<AdapterSet> adapters, IReadOnlyList<string> layers,
        IReadOnlyDictionary<string, string>? metadata, RunWeightDeltas? deltas = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(layers);
        using var model = ModelTensors.Open(source);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            if (adapters.Count > 0)
            {
                foreach (var layer in layers)
                {
                    if (!model.Unet.TryGetValue(layer + ".weight", out var stored))
                        throw new InputException($"{source.Path}: the UNet has no '{layer}.weight' (an adapted layer)");
                    weights[layer] = stored.Read(false);
                }
                if (deltas is not null) deltas.MergeInto(weights);
                else
                {
                    using var own = RunWeightDeltas.Of(source, adapters);
                    own.MergeInto(weights);
                }
            }
            LdmSingleFileWriter.Save(outPath, model, weights.ToDictionary(w => w.Key + ".weight", w => w.Value, StringComparer.Ordinal), metadata);
        }
        finally
        {
            foreach (var w in weights.Values) w.Dispose();
        }
    }

    /// The checkpoint's metadata: `modelspec.*` as sd-scripts writes it for an SD 1.x/2.x checkpoint (the trigger
    /// phrase lists the embedding words), and cdiff's own keys (`extra`).
    public static Dictionary<string, string> Metadata(ExportBaseModel model, string title, string description, IEnumerable<string> triggerWords,
        IReadOnlyDictionary<string, string> extra)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(extra);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        ModelSpec.AddTo(metadata, model, ModelSpec.Architecture(model), ModelSpec.StabilityAi, title, description, triggerWords);
        foreach (var (k, v) in extra) metadata[k] = v;
        return metadata;
    }
}
