using ContinualDiffusion.Checkpoints;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// The comparison of methods as the continual-learning literature draws it: forgetting F (x) against final average
/// accuracy A (y), one labelled point per continual method (C-LoRA's extra λ runs labelled with their λ), ±1 std bars
/// over seeds, and the non-continual reference's A as a dashed line. A label that would sit on an earlier one goes
/// below its point.
public static class MethodTradeoffFigure
{
    public const string FileName = "method-tradeoff.png";

    /// Every continual method (all but the reference).
    public static IReadOnlyList<MethodSummary> Points(IReadOnlyList<MethodSummary> summaries) =>
        [.. summaries.Where(s => s.Method != "reference")];

    /// The point's label: the method, with λ for C-LoRA's runs when the figure has more than one.
    public static string Label(MethodSummary s, IReadOnlyList<MethodSummary> points) =>
        s.Method.StartsWith("clora", StringComparison.Ordinal) && points.Count(p => p.Method.StartsWith("clora", StringComparison.Ordinal)) > 1
            ? $"clora (λ {ReportFormat.Lambda(s.Lambda)})"
            : s.Method;

    public static void Save(string path, IReadOnlyList<MethodSummary> summaries, int width = Figures.DefaultWidth, int height = Figures.DefaultHeight)
    {
        var points = Points(summaries);
        if (points.Count == 0) throw new ArgumentException("method trade-off: no continual method in the results");
        FigureFonts.Ensure();
        var plot = new Plot();
        var (xs, ys) = TradeoffPlot.Coordinates(points);
        var below = new bool[points.Count];
        for (int k = 0; k < points.Count; k++)
        {
            var color = Colors.Category10[k % Colors.Category10.Length];
            var label = Label(points[k], points);
            plot.Add.Marker(xs[k], ys[k], MarkerShape.FilledCircle, 10, color).LegendText = label;
            // Labels run about 12 F-points wide and 2 A-points high at this figure's usual scale.
            below[k] = Enumerable.Range(0, k).Any(j => !below[j] && Math.Abs(xs[j] - xs[k]) < 12 && Math.Abs(ys[j] - ys[k]) < 2);
            TradeoffPlot.AddBarsAndLabel(plot, points[k], xs[k], ys[k], color, label, below[k]);
        }
        // The legend goes to the upper right: the good corner (low F, high A) is where the points are.
        TradeoffPlot.Frame(plot, xs, ys, summaries, rightPads: 3, $"Methods: forgetting vs final accuracy {TradeoffPlot.SeedsNote(points[0])}",
            "A: final average accuracy (%, higher is better)", Alignment.UpperRight);
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
