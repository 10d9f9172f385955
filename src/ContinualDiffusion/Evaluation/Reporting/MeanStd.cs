namespace ContinualDiffusion.Evaluation.Reporting;

/// Mean and sample standard deviation (n − 1 denominator, as is usual for a handful of seeds) of n values.
/// With a single value the spread is unknown: Std is 0 and reports print the mean alone.
public readonly record struct MeanStd(double Mean, double Std, int Count)
{
    public static MeanStd Of(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("mean ± std of no values");
        double mean = values.Average();
        if (values.Count == 1) return new MeanStd(mean, 0, 1);
        double ss = values.Sum(v => (v - mean) * (v - mean));
        return new MeanStd(mean, Math.Sqrt(ss / (values.Count - 1)), values.Count);
    }
}
