using System.Globalization;
using System.Text;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Evaluation.Reporting;

namespace ContinualDiffusion.Classification.Benchmark;

/// Writes the comparison: results.json (every run, raw), report.md (the summary table, then each method's mean
/// accuracy matrix), a heat map per continual method and the average-accuracy-per-task curve of all methods.
public static class ClassifyReport
{
    /// `Dataset`: the continual classes' set; `BackboneData`: what the backbone was pretrained on (its checkpoint's words).
    public sealed record Results(string Backbone, double BackboneAccuracy, int Tasks, IReadOnlyList<long> Seeds, ClassifyOptions Training,
        IReadOnlyList<ClassifyMethodRun> Runs, double WallMinutes, string Dataset = "mnist", string BackboneData = "Fashion-MNIST train (60,000)");

    public sealed record Summary(string Method, MeanStd FinalAverage, MeanStd? Forgetting, double SecondsPerTask, long TrainedValuesPerTask, int Seeds);

    public static IReadOnlyList<Summary> Summarize(IReadOnlyList<ClassifyMethodRun> runs) =>
        [.. runs.GroupBy(r => r.Method).Select(g => new Summary(
            g.Key,
            MeanStd.Of([.. g.Select(r => r.FinalAverage)]),
            g.Key == "joint" ? null : MeanStd.Of([.. g.Select(r => r.Forgetting!.Value)]),
            g.Average(r => r.SecondsPerTask.Average()),
            g.First().TrainedValuesPerTask,
            g.Count()))];

    /// Mean over seeds of each method's R (class orders differ per seed; R is by task position, as the literature reports it).
    public static double[][] MeanR(IEnumerable<ClassifyMethodRun> runs)
    {
        var list = runs.ToList();
        var first = list[0].R;
        return [.. first.Select((row, t) => row.Select((_, i) => list.Average(r => r.R[t][i])).ToArray())];
    }

    public static IReadOnlyList<string> WriteAll(string folder, Results results)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "results.json"), JsonSerializer.Serialize(results, ResultsJson.Options));
        var figures = new List<string>();
        var continual = results.Runs.Where(r => r.Method != "joint").GroupBy(r => r.Method).ToList();
        foreach (var g in continual)
        {
            var name = $"accuracy-{g.Key}.png";
            var r = MeanR(g);
            var labels = Enumerable.Range(1, r.Length).Select(t => $"task {t}").ToList();
            Figures.Heatmap(Path.Combine(folder, name), r, $"{g.Key}: accuracy on task i's classes after task t (mean of {g.Count()} seeds)",
                [.. labels.Select(l => "after " + l)], labels, colorRange: new ScottPlot.Range(0, 1));
            figures.Add(name);
        }
        var curves = continual.ToDictionary(g => g.Key, g =>
        {
            var runs = g.ToList();
            int tasks = runs[0].R.Length;
            var perTask = Enumerable.Range(0, tasks).Select(t => MeanStd.Of([.. runs.Select(r => r.R[t].Average())])).ToList();
            return (perTask.Select(m => m.Mean).ToArray(), perTask.Select(m => m.Count > 1 ? m.Std : 0).ToArray());
        });
        var references = results.Runs.Where(r => r.Method == "joint").GroupBy(r => r.Method)
            .ToDictionary(g => "joint (upper bound)", g => g.Average(r => r.FinalAverage));
        if (curves.Count > 0)
        {
            AverageAccuracyFigure.Save(Path.Combine(folder, "average-accuracy.png"), curves, references,
                $"Class-incremental {ClassifyDatasets.Title(results.Dataset)}, {results.Tasks} tasks: average accuracy over the classes seen");
            figures.Add("average-accuracy.png");
        }
        AtomicFile.WriteAllText(Path.Combine(folder, "report.md"), Render(results, figures));
        return figures;
    }

    public static string Render(Results results, IReadOnlyList<string> figures)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Continual image classification benchmark (C-LoRA's second domain)");
        sb.AppendLine();
        var title = ClassifyDatasets.Title(results.Dataset);
        sb.AppendLine($"Class-incremental, rehearsal-free: the ten classes of {title} in {results.Tasks} tasks of {10 / results.Tasks} (one shuffled class order per seed), " +
            $"each method starting from the same ViT pretrained on {results.BackboneData}; after every task all classes seen so far are scored on the {title} test split " +
            "with no task id. A_N: the final average accuracy over the tasks' classes; F_N: average forgetting (best accuracy on a task's classes before the " +
            "last task minus the final one). Mean ± sample std over seeds.");
        sb.AppendLine();
        sb.AppendLine($"Backbone: `{Path.GetFileName(results.Backbone)}` (test accuracy {100 * results.BackboneAccuracy:F1}% on its pretraining set). Seeds: {string.Join(", ", results.Seeds)}. Wall time {results.WallMinutes:F1} min.");
        sb.AppendLine();
        sb.AppendLine("| method | seeds | A_N | F_N | trained values per task | train time per task |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var s in Summarize(results.Runs).OrderByDescending(s => s.FinalAverage.Mean))
        {
            string f = s.Forgetting is { } fm ? ReportFormat.Percent(fm) : "— (not continual)";
            sb.AppendLine($"| {s.Method} | {s.Seeds} | {ReportFormat.Percent(s.FinalAverage)} | {f} | {s.TrainedValuesPerTask.ToString("N0", inv)} | {s.SecondsPerTask.ToString("F1", inv)} s |");
        }
        sb.AppendLine();
        foreach (var fig in figures.Where(f => f == "average-accuracy.png")) { sb.AppendLine($"![{fig}]({fig})"); sb.AppendLine(); }
        sb.AppendLine("## Accuracy matrices (mean over seeds; row: after task t, column: task i's classes)");
        foreach (var g in results.Runs.GroupBy(r => r.Method))
        {
            sb.AppendLine();
            sb.AppendLine($"### {g.Key}");
            sb.AppendLine();
            var r = MeanR(g);
            int cols = r.Max(row => row.Length);
            sb.AppendLine("| after task | " + string.Join(" | ", Enumerable.Range(1, cols).Select(i => $"task {i}")) + " |");
            sb.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", cols)));
            for (int t = 0; t < r.Length; t++)
                sb.AppendLine($"| {(g.Key == "joint" ? "all (one task)" : (t + 1).ToString(inv))} | " + string.Join(" | ", Enumerable.Range(0, cols).Select(i => i < r[t].Length ? ReportFormat.Percent(r[t][i]) : "")) + " |");
        }
        sb.AppendLine();
        sb.AppendLine("## Class orders");
        sb.AppendLine();
        foreach (var seed in results.Seeds)
            sb.AppendLine($"- seed {seed}: " + string.Join(" → ", ClassifyBenchmarkOptions.TaskClasses(seed, results.Tasks).Select(c => "{" + string.Join(",", c) + "}")));
        sb.AppendLine();
        sb.AppendLine("## Training options");
        sb.AppendLine();
        sb.AppendLine("```json");
        sb.AppendLine(Configuration.JsonConfig.Serialize(results.Training));
        sb.AppendLine("```");
        sb.AppendLine("Per-method defaults: finetune and joint train the whole backbone at a learning rate of 1e-4.");
        sb.AppendLine();
        foreach (var fig in figures.Where(f => f != "average-accuracy.png")) { sb.AppendLine($"![{fig}]({fig})"); sb.AppendLine(); }
        return sb.ToString();
    }
}
