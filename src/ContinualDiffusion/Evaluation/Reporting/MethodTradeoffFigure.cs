using System.Globalization;
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
        double[] xs = [.. points.Select(p => 100 * p.Forgetting.Mean)];
        double[] ys = [.. points.Select(p => 100 * p.FinalAverage.Mean)];
        for (int k = 0; k < points.Count; k++)
        {
            var p = points[k];
            var color = Colors.Category10[k % Colors.Category10.Length];
            var marker = plot.Add.Marker(xs[k], ys[k], MarkerShape.FilledCircle, 10, color);
            marker.LegendText = p.Method;
            if (p.Seeds.Count > 1)
            {
                plot.Add.Line(xs[k] - 100 * p.Forgetting.Std, ys[k], xs[k] + 100 * p.Forgetting.Std, ys[k]).Color = color.WithAlpha(0.5);
                plot.Add.Line(xs[k], ys[k] - 100 * p.FinalAverage.Std, xs[k], ys[k] + 100 * p.FinalAverage.Std).Color = color.WithAlpha(0.5);
            }
            var label = plot.Add.Text(p.Method, xs[k], ys[k]);
            label.LabelFontSize = 13;
            label.OffsetX = 8;
            label.OffsetY = -8;
        }
        double top = ys.Max(), bottom = ys.Min();
        if (LambdaTradeoffFigure.ReferenceAccuracy(summaries) is { } reference)
        {
            var h = plot.Add.HorizontalLine(100 * reference, width: 2, color: Colors.DarkOrange, pattern: LinePattern.Dashed);
            h.LegendText = $"reference A (each concept alone) {(100 * reference).ToString("0.0", CultureInfo.InvariantCulture)}%";
            top = Math.Max(top, 100 * reference);
            bottom = Math.Min(bottom, 100 * reference);
        }
        double left = xs.Min(), right = xs.Max();
        double padX = Math.Max(2, 0.15 * (right - left)), padY = Math.Max(2, 0.15 * (top - bottom));
        plot.Axes.SetLimits(left - padX, right + 3 * padX, bottom - padY, top + padY);
        plot.Title($"Methods: forgetting vs final accuracy (mean over {points[0].Seeds.Count} seed{(points[0].Seeds.Count == 1 ? "" : "s")})");
        plot.XLabel("F: forgetting (%, lower is better)");
        plot.YLabel("A: final average accuracy (%, higher is better)");
        plot.ShowLegend(Alignment.UpperRight); // the good corner (low F, high A) is where the points are
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
