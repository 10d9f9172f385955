using System.Globalization;
using System.Text;
using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Evaluation.Reporting;

/// report.md: settings, one summary row per method, each method's mean R matrix, and links to the figures.
/// Figure names are written as given, so pass paths relative to the report's folder.
public static class MarkdownReport
{
    public static void Write(string path, BenchmarkResults results, IReadOnlyList<string> figureFileNames) =>
        AtomicFile.WriteAllText(path, Render(results, figureFileNames));

    public static string Render(BenchmarkResults results, IReadOnlyList<string> figureFileNames)
    {
        var summaries = ResultsAggregation.Summarize(results);
        var md = new StringBuilder();
        md.Append("# ").AppendLine(results.Title).AppendLine();
        AppendFigures(md, [.. figureFileNames.Where(IsSampleGrid)], // the pictures first: what a reader looks at
            "Samples (rows: concepts; columns: after task t; each cell: samples of that concept's prompt)");
        AppendSummaryTable(md, summaries);
        AppendCeiling(md, results, summaries);
        AppendMeanRTables(md, summaries, results.ConceptNames);
        AppendFigures(md, [.. figureFileNames.Where(f => !IsSampleGrid(f))]);
        AppendSettings(md, results);
        return md.ToString();
    }

    private static void AppendSettings(StringBuilder md, BenchmarkResults results)
    {
        md.AppendLine("## Settings").AppendLine();
        md.AppendLine("| setting | value |").AppendLine("|---|---|");
        for (int i = 0; i < results.ConceptNames.Count; i++) Row(md, $"task {i + 1}", results.ConceptNames[i]);
        foreach (var (key, value) in results.Config) Row(md, key, value);
        md.AppendLine();
    }

    private static void AppendSummaryTable(StringBuilder md, IReadOnlyList<MethodSummary> summaries)
    {
        md.AppendLine("## Results").AppendLine();
        md.AppendLine("A: final average accuracy over all concepts after the last task. F: forgetting, the mean drop from a " +
                      "concept's best accuracy to its final one. MMD²: distance of generated to real images in the classifier's " +
                      "feature space (lower is better); its increase is the forgetting analogue. KID: kernel inception distance " +
                      "(unbiased, cubic polynomial kernel) in the same feature space. Base prompts: mean accuracy of the base " +
                      "model's own coarse prompts before customization → after the last task. Trained per task: values a task trains " +
                      "and stores (adapter layers and the token row), as a share of the UNet's parameters; adapter: the file per task. " +
                      "Mean ± sample std over seeds.")
          .AppendLine();
        md.AppendLine("| method | λ | seeds | A (mean ± std) | F (mean ± std) | final MMD² | MMD² increase | final KID | KID increase | base prompts before → after | trained per task (share of UNet) | adapter per task | train time per task |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in summaries)
        {
            string baseCell = s.BaseAccuracyBefore is { } b && s.BaseAccuracyAfter is { } a
                ? $"{ReportFormat.Percent(b.Mean)} → {ReportFormat.Percent(a.Mean)}"
                : "—";
            Row(md, s.Method, ReportFormat.Lambda(s.Lambda), s.Seeds.Count.ToString(),
                ReportFormat.Percent(s.FinalAverage), ReportFormat.Percent(s.Forgetting),
                ReportFormat.Number(s.FinalMmd), ReportFormat.Number(s.MmdIncrease),
                s.FinalKid is { } k ? ReportFormat.Number(k) : "—", s.KidIncrease is { } ki ? ReportFormat.Number(ki) : "—",
                baseCell, TrainedCell(s), s.AdapterBytesPerTask is { } bytes ? ReportFormat.Bytes(bytes) : "—",
                ReportFormat.Duration(s.TrainSeconds.Mean / Math.Max(1, s.Tasks)));
        }
        md.AppendLine();
    }

    private static string TrainedCell(MethodSummary s) => s.TrainedValuesPerTask is not { } values ? "—"
        : s.UnetParameters is { } unet and > 0
            ? $"{values.ToString("N0", CultureInfo.InvariantCulture)} ({(100 * values / unet).ToString("0.00", CultureInfo.InvariantCulture)}%)"
            : values.ToString("N0", CultureInfo.InvariantCulture);

    /// The classifier's accuracy on real images of each concept's class, next to each method's accuracy of that
    /// concept right after learning it (the diagonal of R) and at the end.
    private static void AppendCeiling(StringBuilder md, BenchmarkResults results, IReadOnlyList<MethodSummary> summaries)
    {
        if (results.Ceiling.Count == 0) return;
        md.AppendLine("### Per concept, against the ceiling").AppendLine();
        md.AppendLine("Ceiling: the scoring classifier's accuracy on all real test images of the concept's class. " +
                      "Each method: accuracy right after learning the concept → after the last task (mean over seeds).").AppendLine();
        Row(md, ["concept", "ceiling", .. summaries.Select(s => s.Method)]);
        Row(md, ["---", "---:", .. summaries.Select(_ => "---:")]);
        for (int i = 0; i < results.ConceptNames.Count; i++)
        {
            string name = results.ConceptNames[i];
            int last = results.ConceptNames.Count - 1;
            Row(md, [name, results.Ceiling.TryGetValue(name, out var c) ? ReportFormat.Percent(c) : "—",
                .. summaries.Select(s => $"{ReportFormat.Percent(s.MeanR[i][i])} → {ReportFormat.Percent(s.MeanR[last][i])}")]);
        }
        Row(md, ["mean", ReportFormat.Percent(results.Ceiling.Values.Average()),
            .. summaries.Select(s => $"{ReportFormat.Percent(Enumerable.Range(0, s.MeanR.Length).Average(i => s.MeanR[i][i]))} → {ReportFormat.Percent(s.MeanR[^1].Average())}")]);
        md.AppendLine();
    }

    private static bool IsSampleGrid(string fileName) => Path.GetFileName(fileName).StartsWith("samples", StringComparison.Ordinal);

    private static void AppendMeanRTables(StringBuilder md, IReadOnlyList<MethodSummary> summaries, IReadOnlyList<string> concepts)
    {
        md.AppendLine("## Accuracy matrices").AppendLine();
        md.AppendLine("Row t: accuracy of each concept learned so far, after training task t (mean over seeds).").AppendLine();
        foreach (var s in summaries)
        {
            md.AppendLine($"### {s.Method} (λ = {ReportFormat.Lambda(s.Lambda)}, {s.Seeds.Count} seed{(s.Seeds.Count == 1 ? "" : "s")})").AppendLine();
            Row(md, ["after task", .. concepts]);
            Row(md, ["---", .. concepts.Select(_ => "---:")]);
            for (int t = 0; t < s.MeanR.Length; t++)
                Row(md, [$"{t + 1}", .. concepts.Select((_, i) => i <= t ? ReportFormat.Percent(s.MeanR[t][i]) : "")]);
            md.AppendLine();
        }
    }

    private static void AppendFigures(StringBuilder md, IReadOnlyList<string> figureFileNames, string heading = "Figures")
    {
        if (figureFileNames.Count == 0) return;
        md.AppendLine($"## {heading}").AppendLine();
        foreach (var f in figureFileNames)
            md.AppendLine($"![{Path.GetFileNameWithoutExtension(f)}]({f.Replace(" ", "%20")})").AppendLine();
    }

    /// A table row; '|' inside a cell would split it, and concept names like "<v1>" would be read as HTML tags.
    private static void Row(StringBuilder md, params string[] cells) =>
        md.Append("| ").AppendJoin(" | ", cells.Select(Escape)).AppendLine(" |");

    private static string Escape(string cell) =>
        cell == "---" || cell == "---:" ? cell : cell.Replace("|", "\\|").Replace("<", "&lt;").Replace(">", "&gt;");
}
