namespace ContinualDiffusion.Interop.Import;

/// The two LoRA key layouts `sample --lora` reads.
public enum LoraFileFormat
{
    /// kohya-ss/sd-scripts `networks/lora.py`: `lora_unet_<path with _>` / `lora_te_<path with _>` +
    /// `.lora_down.weight`, `.lora_up.weight`, `.alpha` (A1111, Forge, ComfyUI, Civitai files).
    Kohya,

    /// diffusers `loaders/lora_pipeline.py` / PEFT: `unet.<path>` / `text_encoder.<path>` + `.lora.down.weight` /
    /// `.lora.up.weight`, `.lora_A.weight` / `.lora_B.weight` or `.lora_linear_layer.down.weight` / `.up.weight`,
    /// and `.alpha` where present.
    Diffusers,
}

public static class LoraFileFormats
{
    /// As diffusers' `StableDiffusionLoraLoaderMixin.lora_state_dict` tells them apart: kohya when the keys start with
    /// `lora_unet_` / `lora_te…` (it requires all of them to; here any is enough, and the others become unknown keys);
    /// diffusers when they start with `unet.` / `text_encoder.`; null when neither.
    public static LoraFileFormat? Detect(IEnumerable<string> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        bool diffusers = false;
        foreach (var k in keys)
        {
            if (k.StartsWith("lora_unet_", StringComparison.Ordinal) || k.StartsWith("lora_te", StringComparison.Ordinal)) return LoraFileFormat.Kohya;
            if (k.StartsWith("unet.", StringComparison.Ordinal) || k.StartsWith("text_encoder", StringComparison.Ordinal)) diffusers = true;
        }
        return diffusers ? LoraFileFormat.Diffusers : null;
    }
}
