using ContinualDiffusion.Checkpoints;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// The comparison of methods as the continual-learning literature draws it: forgetting F (x) against final average
/// accuracy A (y), one labelled point per continual method (the λ sweep's extra C-LoRA runs left out: they have their
/// own figure), ±1 std bars over seeds, and the non-continual reference's A as a dashed line.
public static class MethodTradeoffFigure
{
    public const string FileName = "method-tradeoff.png";

    /// Every continual method but the sweep's "clora-l…" runs.
    public static IReadOnlyList<MethodSummary> Points(IReadOnlyList<MethodSummary> summaries) =>
        [.. summaries.Where(s => s.Method != "reference" && !s.Method.StartsWith("clora-l", StringComparison.Ordinal))];

    public static void Save(string path, IReadOnlyList<MethodSummary> summaries, int width = Figures.DefaultWidth, int height = Figures.DefaultHeight)
    {
        var points = Points(summaries);
        if (points.Count == 0) throw new ArgumentException("method trade-off: no continual method in the results");
        FigureFonts.Ensure();
        var plot = new Plot();
        var (xs, ys) = TradeoffPlot.Coordinates(points);
        for (int k = 0; k < points.Count; k++)
        {
            var color = Colors.Category10[k % Colors.Category10.Length];
            plot.Add.Marker(xs[k], ys[k], MarkerShape.FilledCircle, 10, color).LegendText = points[k].Method;
            TradeoffPlot.AddBarsAndLabel(plot, points[k], xs[k], ys[k], color, points[k].Method);
        }
        // The legend goes to the upper right: the good corner (low F, high A) is where the points are.
        TradeoffPlot.Frame(plot, xs, ys, summaries, rightPads: 3, $"Methods: forgetting vs final accuracy {TradeoffPlot.SeedsNote(points[0])}",
            "A: final average accuracy (%, higher is better)", Alignment.UpperRight);
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
