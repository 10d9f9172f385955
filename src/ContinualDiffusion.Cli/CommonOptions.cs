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

    /// A path option's value as a full path (relative to the working directory), or null.
    public static string? FullPath(string? path) => path is null ? null : Path.GetFullPath(path);
}
