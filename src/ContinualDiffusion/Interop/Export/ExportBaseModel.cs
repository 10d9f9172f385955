using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;

namespace ContinualDiffusion.Interop.Export;

/// What an export needs to know about the run's base model, read from its configs (a folder) or inferred from its
/// header (a single file), without loading a weight: the UNet config (adapted layers and their shapes), the text
/// encoder's width (the concept embeddings'), the prediction type and native resolution (for metadata).
public sealed record ExportBaseModel(string Path, UNetConfig Unet, int TextHiddenSize, string PredictionType, int Resolution)
{
    /// Stable Diffusion 2.x conditions on OpenCLIP ViT-H's 1024-wide states; 1.x on CLIP ViT-L's 768 (kohya's `v2`
    /// flag). Any other width (cdiff's small models) counts as a 1.x-style model.
    public bool IsV2 => Unet.CrossAttentionDims()[0] == 1024;

    public bool IsVPrediction => PredictionType == "v_prediction";

    public static ExportBaseModel Of(BaseModelSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.SingleFile is { } file)
        {
            var a = file.Architecture;
            return new ExportBaseModel(source.Path, a.Unet, a.TextEncoder.HiddenSize, a.Scheduler.PredictionType, source.NativeResolution());
        }
        var folder = source.Folder!;
        return new ExportBaseModel(source.Path, UNetConfig.Load(folder.UnetConfigPath),
            ClipTextConfig.Load(folder.TextEncoderConfigPath).HiddenSize,
            SchedulerConfig.Load(folder.SchedulerConfigPath).PredictionType, source.NativeResolution());
    }
}
