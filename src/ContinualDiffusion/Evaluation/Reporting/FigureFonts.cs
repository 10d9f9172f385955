using ScottPlot;
using SkiaSharp;

namespace ContinualDiffusion.Evaluation.Reporting;

/// Makes sure figure text is drawn with a real font on a headless machine. The SkiaSharp native we ship
/// (NoDependencies, no fontconfig) finds fonts by scanning /usr/share/fonts; ScottPlot then picks the first family
/// it finds (a serif one on Debian). We prefer a sans family, fall back to a font file in a usual place, and fail
/// loudly when there is none: a figure without its labels would be silently useless.
public static class FigureFonts
{
    /// Environment variable naming a .ttf file to use for all figure text (overrides the search).
    public const string FontFileVariable = "CDIFF_FONT";

    /// Name under which a font file is registered with ScottPlot.
    internal const string FileFontName = "cdiff-figures";

    internal static readonly string[] PreferredFamilies =
        ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans", "Arial", "Helvetica", "Ubuntu"];

    internal static readonly string[] FontFileCandidates =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];

    private static readonly Lazy<string> Chosen = new(Configure, LazyThreadSafetyMode.ExecutionAndPublication);

    /// The font family figures use; configures ScottPlot on first call (process-wide, once).
    public static string Ensure() => Chosen.Value;

    /// What to use, given the system's font families, the override variable and which candidate files exist.
    internal abstract record Choice
    {
        internal sealed record Family(string Name) : Choice;
        internal sealed record File(string Path) : Choice;
    }

    internal static Choice Choose(IReadOnlyCollection<string> systemFamilies, string? overrideFile, Func<string, bool> fileExists)
    {
        if (!string.IsNullOrEmpty(overrideFile))
            return fileExists(overrideFile)
                ? new Choice.File(overrideFile)
                : throw new InvalidOperationException($"{FontFileVariable}={overrideFile}: font file not found");
        var family = PreferredFamilies.FirstOrDefault(f => systemFamilies.Contains(f, StringComparer.OrdinalIgnoreCase))
                     ?? systemFamilies.FirstOrDefault();
        if (family is not null) return new Choice.Family(family);
        var file = FontFileCandidates.FirstOrDefault(fileExists);
        return file is not null
            ? new Choice.File(file)
            : throw new InvalidOperationException(
                $"no font for figure text: install one (e.g. apt-get install fonts-dejavu-core) or set {FontFileVariable} to a .ttf file");
    }

    private static string Configure()
    {
        var families = SKFontManager.Default.GetFontFamilies();
        var choice = Choose(families, Environment.GetEnvironmentVariable(FontFileVariable), System.IO.File.Exists);
        switch (choice)
        {
            case Choice.Family f:
                Fonts.Default = f.Name;
                return f.Name;
            case Choice.File file:
                RegisterFile(file.Path);
                Fonts.Default = FileFontName;
                return FileFontName;
            default:
                throw new InvalidOperationException($"unexpected font choice {choice}");
        }
    }

    /// Titles are bold: register a bold face too (the "-Bold" sibling when present, else the regular one),
    /// so a bold request never falls back to a missing system font.
    private static void RegisterFile(string path)
    {
        string ext = Path.GetExtension(path);
        string stem = path[..^ext.Length];
        string bold = new[] { stem + "-Bold" + ext, stem + "Bold" + ext }.FirstOrDefault(System.IO.File.Exists) ?? path;
        Fonts.AddFontFile(FileFontName, path, bold: false, italic: false);
        Fonts.AddFontFile(FileFontName, bold, bold: true, italic: false);
    }
}
