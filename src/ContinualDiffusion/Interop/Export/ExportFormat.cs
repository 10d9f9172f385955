namespace ContinualDiffusion.Interop.Export;

/// What `cdiff export --format` writes.
public enum ExportFormat
{
    /// One kohya-ss LoRA `.safetensors` (A1111, Forge, ComfyUI, sd-scripts) plus one A1111-style embedding file per concept.
    Kohya,
    /// A diffusers LoRA folder (`pytorch_lora_weights.safetensors`, `pipe.load_lora_weights`) plus diffusers
    /// textual-inversion files (`pipe.load_textual_inversion`).
    Diffusers,
    /// A PEFT adapter folder (`adapter_model.safetensors` + `adapter_config.json`, `PeftModel.from_pretrained(unet, DIR)`)
    /// plus diffusers textual-inversion files.
    Peft,
    /// A complete diffusers model folder with the deltas merged into the UNet and the concept tokens in the tokenizer
    /// and text encoder.
    Merged,
    /// One original-LDM single-file checkpoint (A1111, Forge, ComfyUI) with the deltas merged into the UNet, plus one
    /// A1111-style embedding file per concept (a checkpoint cannot carry tokenizer additions).
    MergedSingleFile,
}

public static class ExportFormats
{
    public static readonly IReadOnlyList<string> Names = ["kohya", "diffusers", "peft", "merged", "merged-single-file"];

    public static string Name(this ExportFormat format) => format switch
    {
        ExportFormat.Kohya => "kohya",
        ExportFormat.Diffusers => "diffusers",
        ExportFormat.Peft => "peft",
        ExportFormat.Merged => "merged",
        ExportFormat.MergedSingleFile => "merged-single-file",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown export format"),
    };

    /// The format named `name`, or an InputException naming the known ones.
    public static ExportFormat Parse(string? name) => name switch
    {
        "kohya" => ExportFormat.Kohya,
        "diffusers" => ExportFormat.Diffusers,
        "peft" => ExportFormat.Peft,
        "merged" => ExportFormat.Merged,
        "merged-single-file" => ExportFormat.MergedSingleFile,
        _ => throw new InputException($"--format '{name}' is not a known export format (known: {string.Join(", ", Names)})"),
    };

    /// True for the formats that write LoRA factors (and so accept --rank).
    public static bool IsLora(this ExportFormat format) => format is not (ExportFormat.Merged or ExportFormat.MergedSingleFile);

    /// True for the formats that write one `.safetensors` file with an A1111-style embedding file per concept beside
    /// it, named after the concept's prompt word (so `--out` is a file, and `--embedding-prefix` applies).
    public static bool WritesEmbeddingFilesBeside(this ExportFormat format) => format is ExportFormat.Kohya or ExportFormat.MergedSingleFile;
}
