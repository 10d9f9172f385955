using System.Globalization;
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
        double[] xs = [.. points.Select(p => 100 * p.Forgetting.Mean)];
        double[] ys = [.. points.Select(p => 100 * p.FinalAverage.Mean)];
        var line = plot.Add.Scatter(xs, ys, Colors.SteelBlue);
        line.LineWidth = 1.5f;
        line.MarkerSize = 9;
        line.LegendText = "C-LoRA over λ (λ = 0: LoRA)";
        for (int k = 0; k < points.Count; k++)
        {
            var p = points[k];
            if (p.Seeds.Count > 1)
            {
                plot.Add.Line(xs[k] - 100 * p.Forgetting.Std, ys[k], xs[k] + 100 * p.Forgetting.Std, ys[k]).Color = Colors.SteelBlue.WithAlpha(0.5);
                plot.Add.Line(xs[k], ys[k] - 100 * p.FinalAverage.Std, xs[k], ys[k] + 100 * p.FinalAverage.Std).Color = Colors.SteelBlue.WithAlpha(0.5);
            }
            var label = plot.Add.Text($"λ={ReportFormat.Lambda(p.Lambda)}", xs[k], ys[k]);
            label.LabelFontSize = 13;
            label.OffsetX = 8;
            label.OffsetY = -8;
        }
        double top = ys.Max(), bottom = ys.Min();
        if (ReferenceAccuracy(summaries) is { } reference)
        {
            var h = plot.Add.HorizontalLine(100 * reference, width: 2, color: Colors.DarkOrange, pattern: LinePattern.Dashed);
            h.LegendText = $"reference A (each concept alone) {(100 * reference).ToString("0.0", CultureInfo.InvariantCulture)}%";
            top = Math.Max(top, 100 * reference);
            bottom = Math.Min(bottom, 100 * reference);
        }
        double left = xs.Min(), right = xs.Max();
        double padX = Math.Max(2, 0.15 * (right - left)), padY = Math.Max(2, 0.15 * (top - bottom));
        plot.Axes.SetLimits(left - padX, right + 2 * padX, bottom - padY, top + padY);
        plot.Title($"λ trade-off: forgetting vs final accuracy (mean over {points[0].Seeds.Count} seed{(points[0].Seeds.Count == 1 ? "" : "s")})");
        plot.XLabel("F: forgetting (%, lower is better)");
        plot.YLabel("A: final average accuracy (%)");
        plot.ShowLegend(Alignment.LowerLeft);
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
