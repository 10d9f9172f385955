using System.Globalization;
using ContinualDiffusion.Runs;

namespace ContinualDiffusion.Interop.Export;

/// kohya-ss `train_network.py`'s training metadata (`ss_learning_rate`, `ss_max_train_steps`, `ss_lr_scheduler`, ...)
/// for a LoRA that is one cdiff task, from its manifest entry: what A1111's and Forge's LoRA metadata panels and
/// civitai show as "how it was trained". Values are written as kohya writes them, Python's `str()` of the argument
/// (`0.0005`, `5e-05`, `True`, `None` for an option that was off, `(512, 512)` for the resolution). Only for a
/// single task: the sum of several tasks was not one training, and kohya's own merge tools drop these keys too.
public static class KohyaTrainingMetadata
{
    /// The keys for `entry`, or none when its manifest predates the training recipe.
    public static IReadOnlyDictionary<string, string> Of(TaskEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Training is not { } r) return new Dictionary<string, string>();
        var keys = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["ss_learning_rate"] = PythonFloat(entry.LearningRate),
            ["ss_unet_lr"] = PythonFloat(entry.LearningRate),
            ["ss_num_train_images"] = PythonInt(entry.ImageCount),
            ["ss_max_train_steps"] = PythonInt(entry.Steps),
            ["ss_gradient_accumulation_steps"] = PythonInt(r.GradientAccumulationSteps),
            ["ss_gradient_checkpointing"] = PythonBool(r.GradientCheckpointing),
            ["ss_lr_scheduler"] = r.LrScheduler,
            ["ss_lr_warmup_steps"] = PythonInt(r.LrWarmupSteps),
            ["ss_mixed_precision"] = r.Dtype == "fp32" ? "no" : r.Dtype,
            ["ss_seed"] = entry.Seed.ToString(CultureInfo.InvariantCulture),
            ["ss_noise_offset"] = r.NoiseOffset > 0 ? PythonFloat(r.NoiseOffset) : "None",
            ["ss_min_snr_gamma"] = r.SnrGamma is { } gamma ? PythonFloat(gamma) : "None",
            ["ss_max_grad_norm"] = PythonFloat(r.MaxGradNorm),
            ["ss_batch_size_per_device"] = PythonInt(r.BatchSize),
            ["ss_total_batch_size"] = PythonInt(r.BatchSize * r.GradientAccumulationSteps),
            ["ss_resolution"] = $"({PythonInt(r.Resolution)}, {PythonInt(r.Resolution)})",
            ["ss_flip_aug"] = PythonBool(r.HorizontalFlip),
            ["ss_enable_bucket"] = PythonBool(r.BucketStep is not null),
        };
        if (r.BucketStep is { } step)
        {
            keys["ss_min_bucket_reso"] = PythonInt(Imaging.AspectBuckets.MinSideOf(r.Resolution, step));
            keys["ss_max_bucket_reso"] = PythonInt(Imaging.AspectBuckets.MaxSideOf(r.Resolution, step));
            keys["ss_bucket_no_upscale"] = "False";
        }
        return keys;
    }

    private static string PythonInt(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static string PythonBool(bool v) => v ? "True" : "False";

    /// Python's `repr(float)`: the shortest digits that read back as the same double, in positional notation unless the
    /// decimal point lies 4 or more places before the first digit or more than 16 after it (`0.0005`, `100000000.0`), else as `5e-05`, `1e+16`.
    public static string PythonFloat(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        if (v == 0) return double.IsNegative(v) ? "-0.0" : "0.0";
        string sign = v < 0 ? "-" : "";
        // "E16" is not shortest; "R" is, in either positional or exponent form: normalise it to digits and an exponent.
        string r = Math.Abs(v).ToString("R", CultureInfo.InvariantCulture);
        int e = 0;
        int at = r.IndexOfAny(['E', 'e']);
        if (at >= 0)
        {
            e = int.Parse(r[(at + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..at];
        }
        int point = r.IndexOf('.');
        string digits = point < 0 ? r : r.Remove(point, 1);
        int decpt = (point < 0 ? r.Length : point) + e; // value = 0.digits × 10^decpt
        int lead = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        decpt -= lead;
        if (decpt > -4 && decpt <= 16)
        {
            if (decpt <= 0) return sign + "0." + new string('0', -decpt) + digits;
            if (decpt >= digits.Length) return sign + digits + new string('0', decpt - digits.Length) + ".0";
            return sign + digits[..decpt] + "." + digits[decpt..];
        }
        int exponent = decpt - 1;
        string mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
    }
}
