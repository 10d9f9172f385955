using ContinualDiffusion.Checkpoints;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// The λ trade-off of C-LoRA: forgetting F (x) against final average accuracy A (y), one point per λ (λ = 0 is
/// plain sequential LoRA), with ±1 std error bars over seeds and the non-continual reference's A as a dashed line
/// (what a method that forgets nothing and learns each concept as well as alone would reach).
public static class LambdaTradeoffFigure
{
    public const string FileName = "lambda-tradeoff.png";

    /// The points the figure shows: every continual summary with a finite λ, clora (any λ) or lora (λ = 0).
    public static IReadOnlyList<MethodSummary> Points(IReadOnlyList<MethodSummary> summaries) =>
        [.. summaries.Where(s => double.IsFinite(s.Lambda) && (s.Method == "lora" || s.Method.StartsWith("clora", StringComparison.Ordinal)))
            .OrderBy(s => s.Lambda)];

    /// The reference's A: the mean over concepts of their accuracy right after being learned (never forgotten).
    public static double? ReferenceAccuracy(IReadOnlyList<MethodSummary> summaries) =>
        summaries.FirstOrDefault(s => s.Method == "reference") is { } r ? r.FinalAverage.Mean : null;

    public static void Save(string path, IReadOnlyList<MethodSummary> summaries, int width = Figures.DefaultWidth, int height = Figures.DefaultHeight)
    {
        var points = Points(summaries);
        if (points.Count == 0) throw new ArgumentException("λ trade-off: no C-LoRA or LoRA results");
        FigureFonts.Ensure();
        var plot = new Plot();
        var (xs, ys) = TradeoffPlot.Coordinates(points);
        var line = plot.Add.Scatter(xs, ys, Colors.SteelBlue);
        line.LineWidth = 1.5f;
        line.MarkerSize = 9;
        line.LegendText = "C-LoRA over λ (λ = 0: LoRA)";
        for (int k = 0; k < points.Count; k++)
            TradeoffPlot.AddBarsAndLabel(plot, points[k], xs[k], ys[k], Colors.SteelBlue, $"λ={ReportFormat.Lambda(points[k].Lambda)}");
        TradeoffPlot.Frame(plot, xs, ys, summaries, rightPads: 2, $"λ trade-off: forgetting vs final accuracy {TradeoffPlot.SeedsNote(points[0])}",
            "A: final average accuracy (%)", Alignment.LowerLeft);
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
