namespace ContinualDiffusion.Evaluation.Reporting;

/// Turns per-seed runs into per-method summaries. Each metric is computed per run first and then averaged over
/// seeds, so the std measures seed-to-seed variation of the metric itself (not of the underlying matrix entries).
public static class ResultsAggregation
{
    /// One summary per method, in the order methods first appear in results.Runs.
    public static IReadOnlyList<MethodSummary> Summarize(BenchmarkResults results)
    {
        ResultsValidation.Validate(results);
        return [.. results.Runs.GroupBy(r => r.Method).Select(g => Summarize([.. g]))];
    }

    private static MethodSummary Summarize(IReadOnlyList<MethodRun> runs)
    {
        bool hasBase = runs[0].BaseClassAccuracyBefore is { Count: > 0 };
        return new MethodSummary
        {
            Method = runs[0].Method,
            Lambda = runs[0].Lambda,
            Seeds = [.. runs.Select(r => r.Seed)],
            FinalAverage = Over(runs, r => ContinualMetrics.FinalAverage(r.R)),
            Forgetting = Over(runs, r => ContinualMetrics.Forgetting(r.R)),
            FinalMmd = Over(runs, r => ContinualMetrics.FinalAverage(r.Mmd)),
            MmdIncrease = Over(runs, r => ContinualMetrics.Increase(r.Mmd)),
            FinalKid = runs[0].Kid is null ? null : Over(runs, r => ContinualMetrics.FinalAverage(r.Kid!)),
            KidIncrease = runs[0].Kid is null ? null : Over(runs, r => ContinualMetrics.Increase(r.Kid!)),
            BaseAccuracyBefore = hasBase ? Over(runs, r => r.BaseClassAccuracyBefore.Values.Average()) : null,
            BaseAccuracyAfter = hasBase ? Over(runs, r => r.BaseClassAccuracyAfter.Values.Average()) : null,
            BaseAccuracyDrop = hasBase ? Over(runs, BaseAccuracyDrop) : null,
            TrainSeconds = Over(runs, r => r.TrainSeconds),
            SampleSeconds = Over(runs, r => r.SampleSeconds),
            TrainedValuesPerTask = MeanOf(runs, r => r.TrainedValuesPerTask),
            AdapterBytesPerTask = MeanOf(runs, r => r.AdapterBytesPerTask),
            UnetParameters = runs.Select(r => r.UnetParameters).FirstOrDefault(u => u is not null),
            Tasks = runs[0].R.Length,
            MeanR = MeanLowerTriangle(runs.Select(r => r.R).ToList()),
            MeanMmd = MeanLowerTriangle(runs.Select(r => r.Mmd).ToList()),
        };
    }

    /// Mean over base classes of (accuracy before customization − accuracy after the last task).
    public static double BaseAccuracyDrop(MethodRun run) =>
        run.BaseClassAccuracyBefore.Average(kv => kv.Value - run.BaseClassAccuracyAfter[kv.Key]);

    /// Element-wise mean of same-size matrices over their defined entries (row t, columns 0..t).
    public static double[][] MeanLowerTriangle(IReadOnlyList<double[][]> matrices)
    {
        int tasks = matrices[0].Length;
        return [.. Enumerable.Range(0, tasks).Select(t =>
            Enumerable.Range(0, t + 1).Select(i => matrices.Average(m => m[t][i])).ToArray())];
    }

    private static double? MeanOf(IReadOnlyList<MethodRun> runs, Func<MethodRun, double?> value)
    {
        var known = runs.Select(value).Where(v => v is not null).Select(v => v!.Value).ToList();
        return known.Count == 0 ? null : known.Average();
    }

    private static MeanStd Over(IReadOnlyList<MethodRun> runs, Func<MethodRun, double> metric) =>
        MeanStd.Of([.. runs.Select(metric)]);
}
