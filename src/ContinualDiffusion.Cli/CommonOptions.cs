using System.CommandLine;

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
}
