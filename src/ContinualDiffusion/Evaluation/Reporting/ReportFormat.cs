using System.Globalization;

namespace ContinualDiffusion.Evaluation.Reporting;

/// How numbers appear in reports and figures: invariant culture (a report must not change with the machine's
/// locale), accuracies as percentages with one decimal, MMD² with three significant digits.
public static class ReportFormat
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// 0.8125 → "81.3%".
    public static string Percent(double fraction) => (100 * fraction).ToString("0.0", Inv) + "%";

    /// "81.3% ± 2.1%" (the std in percentage points), or "81.3%" for a single seed.
    public static string Percent(MeanStd v) =>
        v.Count > 1 ? $"{Percent(v.Mean)} ± {Percent(v.Std)}" : Percent(v.Mean);

    /// Three significant digits without switching to exponents for the usual MMD² range: 0.0123, 0.456, 1.23.
    public static string Number(double v)
    {
        if (v == 0 || !double.IsFinite(v)) return v.ToString(Inv);
        double mag = Math.Floor(Math.Log10(Math.Abs(v)));
        if (mag < -4 || mag >= 6) return v.ToString("0.00e+0", Inv);
        return v.ToString("F" + SignificantDecimals(v, 3), Inv);
    }

    /// The std gets the mean's decimals (more digits than the mean carries would be noise), but at least one
    /// significant digit so a small nonzero spread does not print as 0: 0.0388 ± 0.0003.
    public static string Number(MeanStd v)
    {
        if (v.Count <= 1) return Number(v.Mean);
        string mean = Number(v.Mean);
        int meanDecimals = mean.Contains('e') || !mean.Contains('.') ? 0 : mean.Length - mean.IndexOf('.') - 1;
        int decimals = v.Std > 0 ? Math.Max(meanDecimals, SignificantDecimals(v.Std, 1)) : meanDecimals;
        return mean.Contains('e') ? $"{mean} ± {Number(v.Std)}" : $"{mean} ± {v.Std.ToString("F" + decimals, Inv)}";
    }

    /// Decimals needed to show v with the given number of significant digits (0 for large values).
    private static int SignificantDecimals(double v, int digits) =>
        (int)Math.Clamp(digits - 1 - Math.Floor(Math.Log10(Math.Abs(v))), 0, 15);

    /// λ as on a sweep label: 0 → "0", 1e6 → "1e+6", 0.5 → "0.5"; NaN (no λ) → "—".
    public static string Lambda(double lambda)
    {
        if (double.IsNaN(lambda)) return "—";
        if (lambda == 0) return "0";
        double a = Math.Abs(lambda);
        return a >= 1e4 || a < 1e-3 ? lambda.ToString("0.##e+0", Inv) : lambda.ToString("0.###", Inv);
    }

    /// "12.3 kB", "4.5 MB" (decimal units, as file managers show them).
    public static string Bytes(double bytes) => bytes switch
    {
        < 1e3 => bytes.ToString("0", Inv) + " B",
        < 1e6 => (bytes / 1e3).ToString("0.0", Inv) + " kB",
        < 1e9 => (bytes / 1e6).ToString("0.0", Inv) + " MB",
        _ => (bytes / 1e9).ToString("0.00", Inv) + " GB",
    };

    /// 42 → "42 s", 750 → "12.5 min", 11000 → "3.06 h".
    public static string Duration(double seconds) => seconds switch
    {
        < 120 => seconds.ToString("0", Inv) + " s",
        < 7200 => (seconds / 60).ToString("0.0", Inv) + " min",
        _ => (seconds / 3600).ToString("0.00", Inv) + " h",
    };
}
