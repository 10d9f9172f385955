namespace ContinualDiffusion.Evaluation.Reporting;

/// Checks that results can be aggregated without silently mixing incomparable numbers. Every run must cover every
/// concept (so final averages are over the same tasks), scores must be finite, and a method name must mean one λ
/// and distinct seeds (otherwise its mean ± std would average different experiments or count a seed twice).
public static class ResultsValidation
{
    public static void Validate(BenchmarkResults results)
    {
        if (results.ConceptNames is not { Count: > 0 }) throw new ResultsException("results: concept_names is empty; expected one name per task");
        if (results.Runs is not { Count: > 0 }) throw new ResultsException("results: runs is empty; expected at least one method run");
        int tasks = results.ConceptNames.Count;
        foreach (var run in results.Runs) ValidateRun(run, tasks);
        foreach (var method in results.Runs.GroupBy(r => r.Method)) ValidateMethod(method.Key, [.. method]);
    }

    private static void ValidateRun(MethodRun run, int tasks)
    {
        if (string.IsNullOrWhiteSpace(run.Method)) throw new ResultsException($"run with seed {run.Seed}: method name is empty");
        ValidateMatrix(run.R, "r", run, tasks, requireUnitInterval: true);
        ValidateMatrix(run.Mmd, "mmd", run, tasks, requireUnitInterval: false);
        if (run.Kid is not null) ValidateMatrix(run.Kid, "kid", run, tasks, requireUnitInterval: false);
        ValidateBaseAccuracy(run);
        if (!double.IsFinite(run.TrainSeconds) || run.TrainSeconds < 0 || !double.IsFinite(run.SampleSeconds) || run.SampleSeconds < 0)
            throw new ResultsException($"{run.Label}: train_seconds and sample_seconds must be finite and >= 0");
    }

    private static void ValidateMatrix(double[][]? m, string name, MethodRun run, int tasks, bool requireUnitInterval)
    {
        if (m is null) throw new ResultsException($"{run.Label}: '{name}' is missing");
        if (m.Length != tasks)
            throw new ResultsException($"{run.Label}: '{name}' has {m.Length} rows, expected one per task ({tasks})");
        for (int t = 0; t < tasks; t++)
        {
            if (m[t] is null || m[t].Length < t + 1)
                throw new ResultsException($"{run.Label}: '{name}' row {t} has {m[t]?.Length ?? 0} entries, expected at least {t + 1} (concepts 0..{t})");
            for (int i = 0; i <= t; i++)
            {
                double v = m[t][i];
                bool ok = double.IsFinite(v) && (!requireUnitInterval || v is >= 0 and <= 1);
                if (!ok)
                    throw new ResultsException($"{run.Label}: '{name}'[{t}][{i}] = {v}, expected a finite {(requireUnitInterval ? "fraction in [0, 1]" : "number")}");
            }
        }
    }

    private static void ValidateBaseAccuracy(MethodRun run)
    {
        var before = run.BaseClassAccuracyBefore ?? [];
        var after = run.BaseClassAccuracyAfter ?? [];
        if (!before.Keys.ToHashSet().SetEquals(after.Keys))
            throw new ResultsException($"{run.Label}: base_class_accuracy_before and _after must name the same classes " +
                                       $"(before: {string.Join(", ", before.Keys)}; after: {string.Join(", ", after.Keys)})");
        foreach (var (cls, v) in before.Concat(after))
            if (!double.IsFinite(v) || v < 0 || v > 1)
                throw new ResultsException($"{run.Label}: base-class accuracy of '{cls}' = {v}, expected a fraction in [0, 1]");
    }

    private static void ValidateMethod(string method, IReadOnlyList<MethodRun> runs)
    {
        var lambdas = runs.Select(r => r.Lambda).Distinct().ToList();
        if (lambdas.Count > 1)
            throw new ResultsException($"method '{method}': runs have different λ ({string.Join(", ", lambdas)}); give each λ its own method name");
        var dupSeed = runs.GroupBy(r => r.Seed).FirstOrDefault(g => g.Count() > 1);
        if (dupSeed is not null) throw new ResultsException($"method '{method}': seed {dupSeed.Key} appears {dupSeed.Count()} times");
        if (runs.Any(r => r.Kid is null) && runs.Any(r => r.Kid is not null))
            throw new ResultsException($"method '{method}': some runs have KID scores and some do not");
        bool anyBase = runs.Any(r => r.BaseClassAccuracyBefore is { Count: > 0 });
        if (anyBase && runs.Any(r => r.BaseClassAccuracyBefore is not { Count: > 0 }))
            throw new ResultsException($"method '{method}': some runs have base-class accuracies and some do not");
    }
}
