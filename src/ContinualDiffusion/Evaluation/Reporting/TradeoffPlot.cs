using System.Globalization;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// What the two F-against-A figures (LambdaTradeoffFigure, MethodTradeoffFigure) draw alike: a point's ±1 std bars
/// over seeds and its label, and the frame — the reference's A as a dashed line, axis limits around every point.
internal static class TradeoffPlot
{
    /// F (x) and A (y) of each summary, in percent.
    public static (double[] Xs, double[] Ys) Coordinates(IReadOnlyList<MethodSummary> points) =>
        ([.. points.Select(p => 100 * p.Forgetting.Mean)], [.. points.Select(p => 100 * p.FinalAverage.Mean)]);

    /// ±1 std bars (when there is more than one seed) and a label to the point's upper right (lower right when
    /// `below`, for a point whose upper-right neighbour already carries a label).
    public static void AddBarsAndLabel(Plot plot, MethodSummary p, double x, double y, Color color, string label, bool below = false)
    {
        if (p.Seeds.Count > 1)
        {
            plot.Add.Line(x - 100 * p.Forgetting.Std, y, x + 100 * p.Forgetting.Std, y).Color = color.WithAlpha(0.5);
            plot.Add.Line(x, y - 100 * p.FinalAverage.Std, x, y + 100 * p.FinalAverage.Std).Color = color.WithAlpha(0.5);
        }
        var text = plot.Add.Text(label, x, y);
        text.LabelFontSize = 13;
        text.OffsetX = 8;
        text.OffsetY = below ? 14 : -8;
    }

    /// The reference line, limits (`rightPads` paddings to the right, room for labels), title, axis labels and legend.
    public static void Frame(Plot plot, double[] xs, double[] ys, IReadOnlyList<MethodSummary> summaries, double rightPads, string title, string yLabel, Alignment legend)
    {
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
        plot.Axes.SetLimits(left - padX, right + rightPads * padX, bottom - padY, top + padY);
        plot.Title(title);
        plot.XLabel("F: forgetting (%, lower is better)");
        plot.YLabel(yLabel);
        plot.ShowLegend(legend);
    }

    /// "(mean over 3 seeds)".
    public static string SeedsNote(MethodSummary first) => $"(mean over {first.Seeds.Count} seed{(first.Seeds.Count == 1 ? "" : "s")})";
}
