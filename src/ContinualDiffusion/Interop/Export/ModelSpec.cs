using System.Globalization;

namespace ContinualDiffusion.Interop.Export;

/// Stability AI's model spec, the `modelspec.*` safetensors metadata (sai_model_spec 1.0.0) as kohya-ss/sd-scripts
/// `library/sai_model_spec.py` writes it for SD 1.x/2.x checkpoints, LoRAs and textual inversions.
public static class ModelSpec
{
    public const string Version = "1.0.0";

    /// `modelspec.implementation` of a checkpoint or an embedding (determine_implementation: IMPL_STABILITY_AI; an
    /// SD 1/2 LoRA is "diffusers").
    public const string StabilityAi = "https://github.com/Stability-AI/generative-models";

    /// `stable-diffusion-v1`, `stable-diffusion-v2-512` or `stable-diffusion-v2-768-v`; adapters add `/lora` or
    /// `/textual-inversion`.
    public static string Architecture(ExportBaseModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.IsV2 ? model.IsVPrediction ? "stable-diffusion-v2-768-v" : "stable-diffusion-v2-512" : "stable-diffusion-v1";
    }

    /// The `modelspec.*` keys of a file exported from `model` (`architecture` with its `/lora` or other suffix,
    /// `implementation` "diffusers" for an SD 1/2 LoRA, StabilityAi for a checkpoint or embedding).
    public static void AddTo(IDictionary<string, string> metadata, ExportBaseModel model, string architecture, string implementation,
        string title, string description, IEnumerable<string> triggerWords)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(model);
        metadata["modelspec.sai_model_spec"] = Version;
        metadata["modelspec.architecture"] = architecture;
        metadata["modelspec.implementation"] = implementation;
        metadata["modelspec.title"] = title;
        metadata["modelspec.description"] = description;
        metadata["modelspec.resolution"] = $"{model.Resolution}x{model.Resolution}";
        metadata["modelspec.prediction_type"] = model.IsVPrediction ? "v" : "epsilon";
        metadata["modelspec.trigger_phrase"] = string.Join(", ", triggerWords);
        metadata["modelspec.date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture);
    }
}
