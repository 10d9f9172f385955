using System.CommandLine;
using ContinualDiffusion.Interop.SingleFile;

namespace ContinualDiffusion.Cli;

/// Options shared by several commands, declared once so their names, defaults and help read the same.
internal static class CommonOptions
{
    public const string DefaultRunDir = "cdiff-run";

    public static Option<DirectoryInfo> Run() => new("--run")
    {
        Description = "The run directory (manifest, one adapter per task).",
        DefaultValueFactory = _ => new DirectoryInfo(DefaultRunDir),
    };

    /// `--model`: a diffusers folder or a single file; the library decides which (Checkpoints/BaseModelSource).
    public static Option<string?> Model(string description) => new("--model") { Description = description, HelpName = "DIR|FILE" };

    public static Option<FileInfo?> OriginalConfig() => new("--original-config")
    {
        Description = "The LDM yaml of a single-file --model (v1-inference.yaml, v2-inference-v.yaml, ...) for what its weights cannot say: attention heads, prediction type, noise schedule, resolution. Optional; a run remembers it.",
    };

    public static Option<string?> PredictionType()
    {
        var option = new Option<string?>("--prediction-type")
        {
            Description = "epsilon or v_prediction, for a single-file --model (overrides its yaml; SD 2.x files without a yaml need it). A run remembers it.",
        };
        option.AcceptOnlyFromAmong([.. LdmArchitecture.PredictionTypes]);
        return option;
    }

    /// The single-file options given on the command line, or null when neither was.
    public static SingleFileOptions? SingleFile(ParseResult parse, Option<FileInfo?> originalConfig, Option<string?> predictionType)
    {
        var yaml = parse.GetValue(originalConfig);
        var prediction = parse.GetValue(predictionType);
        return yaml is null && prediction is null ? null : new SingleFileOptions { OriginalConfigPath = yaml?.FullName, PredictionType = prediction };
    }

    public static Option<string?> Device() => new("--device")
    {
        Description = "cpu, cuda or cuda:N (default: CUDA when this is the CUDA build and a device is visible, else the CPU).",
        HelpName = "cpu|cuda[:N]",
    };

    public static Option<string?> DType() => new("--dtype")
    {
        Description = "Precision of the frozen weights: fp32 (default), bf16 (half the memory; the recommendation on CUDA) or fp16 (CUDA only). What trains, the optimiser, the loss and every file written stay float32.",
        HelpName = "fp32|bf16|fp16",
    };

    public static Option<bool> VaeFp32() => new("--vae-fp32")
    {
        Description = "Keep the VAE in float32 with --dtype bf16/fp16 (the usual fix for black or speckled images).",
    };

    /// The device and precision given (`--device`, and `--dtype`/`--vae-fp32` where the command has them).
    public static (TorchSharp.torch.Device Device, Runtime.ComputePrecision Precision) Compute(ParseResult parse, Option<string?> device,
        Option<string?>? dtype = null, Option<bool>? vaeFp32 = null)
    {
        var d = Runtime.ComputePrecision.ParseDevice(parse.GetValue(device));
        var precision = dtype is null ? Runtime.ComputePrecision.Float32
            : Runtime.ComputePrecision.Parse(parse.GetValue(dtype), vaeFp32 is not null && parse.GetValue(vaeFp32), d);
        return (d, precision);
    }

    /// `--device` of a command that computes on the CPU only: the value is checked like everywhere, then anything but
    /// the CPU is refused naming the command.
    public static void CpuOnly(ParseResult parse, Option<string?> device, string command)
    {
        var text = parse.GetValue(device);
        if (text is null) return;
        var d = Runtime.ComputePrecision.ParseDevice(text);
        if (d.type != TorchSharp.DeviceType.CPU) throw new InputException($"--device {text}: `cdiff {command}` runs on the CPU only in this version");
    }

    /// A path option's value as a full path (relative to the working directory), or null.
    public static string? FullPath(string? path) => path is null ? null : Path.GetFullPath(path);
}
