using System.Globalization;
using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Interop.Import;

/// One `--lora FILE[:SCALE]`: another tool's LoRA file and the multiplier to apply it with (kohya-ss/sd-scripts
/// `networks/lora.py`: ΔW = multiplier · up·down · alpha/rank; A1111's `<lora:name:SCALE>`). SCALE defaults to 1; any
/// finite number (negative ones too, as "slider" LoRAs use). A folder means its `pytorch_lora_weights.safetensors`,
/// as diffusers' `load_lora_weights(DIR)` reads it.
public sealed record LoraSpec(string Path, double Scale)
{
    public const string Option = "--lora";
    public const string DiffusersFileName = "pytorch_lora_weights.safetensors";

    /// Parses and checks the argument: the file must exist and be a safetensors file (a pickle is refused with the
    /// reason). The scale is what follows the last ':' unless the whole argument names an existing file.
    public static LoraSpec Parse(string argument)
    {
        ArgumentNullException.ThrowIfNull(argument);
        var (path, suffix) = ImportArgument.Split(argument);
        double scale = 1;
        if (suffix is not null && (!double.TryParse(suffix, NumberStyles.Float, CultureInfo.InvariantCulture, out scale) || !double.IsFinite(scale)))
            throw new InputException($"{Option} {argument}: '{suffix}' is not a number; write FILE or FILE:SCALE, e.g. style.safetensors:0.8");
        var file = ImportArgument.ResolveFile(Option, path, DiffusersFileName, "the LoRA");
        return new LoraSpec(file, scale);
    }

    public override string ToString() => Scale == 1 ? Path : $"{Path}:{Scale.ToString("R", CultureInfo.InvariantCulture)}";
}

/// Shared rules for `--lora FILE[:SCALE]` and `--embedding FILE[:WORD]`.
internal static class ImportArgument
{
    /// (path, suffix after the last ':') unless the argument itself is an existing file or folder, the ':' is the
    /// first character, or what follows it looks like a path (a Windows drive letter, `C:\…`).
    public static (string Path, string? Suffix) Split(string argument)
    {
        int colon = argument.LastIndexOf(':');
        if (colon <= 0 || File.Exists(argument) || Directory.Exists(argument)) return (argument, null);
        var suffix = argument[(colon + 1)..];
        if (suffix.Contains('/') || suffix.Contains('\\')) return (argument, null);
        return (argument[..colon], suffix);
    }

    /// The full path of an existing safetensors file; a folder means its `defaultName` file. Missing files, pickles and
    /// folders without that file are one-line errors naming the option.
    public static string ResolveFile(string option, string path, string defaultName, string what)
    {
        if (path.Length == 0) throw new InputException($"{option}: no file given");
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            var inside = System.IO.Path.Combine(full, defaultName);
            if (!File.Exists(inside))
                throw new InputException($"{option} {path}: a folder without {defaultName}; give the .safetensors file itself");
            full = inside;
        }
        else if (!File.Exists(full)) throw new InputException($"{option} {path}: no such file");
        if (PickleRefusal.LooksLikePickle(full)) throw PickleRefusal.Refuse(full, what);
        return full;
    }
}
