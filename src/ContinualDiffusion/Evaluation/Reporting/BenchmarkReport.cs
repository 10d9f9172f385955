namespace ContinualDiffusion.Evaluation.Reporting;

/// Writes a complete report folder: results.json (raw data), one accuracy heat map per method, the concept curves,
/// the method bars and report.md linking them. Returns the written file names, relative to the folder.
public static class BenchmarkReport
{
    public const string ResultsFileName = "results.json";
    public const string ReportFileName = "report.md";
    public const string ConceptCurvesFileName = "concept-curves.png";
    public const string MethodBarsFileName = "method-bars.png";

    /// `extraFigures`: pictures the caller already wrote into the folder (e.g. sample grids), linked after the plots.
    public static IReadOnlyList<string> WriteAll(string folder, BenchmarkResults results, IReadOnlyList<string>? extraFigures = null)
    {
        var summaries = ResultsAggregation.Summarize(results);
        var clash = summaries.GroupBy(s => HeatmapFileName(s.Method)).FirstOrDefault(g => g.Count() > 1);
        if (clash is not null)
            throw new ResultsException($"methods {string.Join(" and ", clash.Select(s => $"'{s.Method}'"))} would share the figure file {clash.Key}");
        Directory.CreateDirectory(folder);
        ResultsJson.Write(Path.Combine(folder, ResultsFileName), results);

        var figures = new List<string>();
        var rowLabels = Enumerable.Range(1, results.ConceptNames.Count).Select(t => $"after task {t}").ToList();
        foreach (var s in summaries)
        {
            string name = HeatmapFileName(s.Method);
            Figures.Heatmap(Path.Combine(folder, name), s.MeanR,
                $"{s.Method} (λ = {ReportFormat.Lambda(s.Lambda)}): accuracy, mean of {s.Seeds.Count} seed{(s.Seeds.Count == 1 ? "" : "s")}",
                rowLabels, results.ConceptNames, asPercent: true, colorRange: new ScottPlot.Range(0, 1));
            figures.Add(name);
        }
        Figures.ConceptCurves(Path.Combine(folder, ConceptCurvesFileName),
            summaries.ToDictionary(s => s.Method, s => s.MeanR), results.ConceptNames, width: 1200, height: 800);
        figures.Add(ConceptCurvesFileName);
        Figures.MethodBars(Path.Combine(folder, MethodBarsFileName), summaries);
        figures.Add(MethodBarsFileName);
        if (LambdaTradeoffFigure.Points(summaries).Count >= 3) // a sweep: λ = 0 (LoRA) and at least two C-LoRA λ
        {
            LambdaTradeoffFigure.Save(Path.Combine(folder, LambdaTradeoffFigure.FileName), summaries);
            figures.Add(LambdaTradeoffFigure.FileName);
        }
        if (MethodTradeoffFigure.Points(summaries).Count >= 3) // a comparison of methods, not just C-LoRA against LoRA
        {
            MethodTradeoffFigure.Save(Path.Combine(folder, MethodTradeoffFigure.FileName), summaries);
            figures.Add(MethodTradeoffFigure.FileName);
        }
        figures.AddRange(extraFigures ?? []);

        MarkdownReport.Write(Path.Combine(folder, ReportFileName), results, figures);
        return [ResultsFileName, .. figures, ReportFileName];
    }

    /// "accuracy-clora-l1e6.png": method names are command-line words, but keep only file-name-safe characters.
    public static string HeatmapFileName(string method)
    {
        var safe = new string([.. method.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_')]);
        return $"accuracy-{safe}.png";
    }
}
