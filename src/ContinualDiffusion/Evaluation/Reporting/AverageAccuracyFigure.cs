using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// One line per method: the average accuracy over every class seen so far after each task (mean over seeds, ±1 std
/// error bars), and horizontal reference lines for non-continual results (e.g. joint training).
public static class AverageAccuracyFigure
{
    public static void Save(string path, IReadOnlyDictionary<string, (double[] Mean, double[] Std)> curves,
        IReadOnlyDictionary<string, double> references, string title, int width = Figures.DefaultWidth, int height = Figures.DefaultHeight)
    {
        if (curves.Count == 0) throw new ArgumentException("average accuracy figure: no methods");
        FigureFonts.Ensure();
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int index = 0, tasks = curves.Values.Max(c => c.Mean.Length);
        foreach (var (method, (mean, std)) in curves)
        {
            double[] xs = [.. Enumerable.Range(1, mean.Length).Select(t => (double)t)];
            var color = palette.GetColor(index++);
            var line = plot.Add.Scatter(xs, [.. mean.Select(v => 100 * v)], color);
            line.LineWidth = 2;
            line.MarkerSize = 7;
            line.LegendText = method;
            var bars = plot.Add.ErrorBar(xs, [.. mean.Select(v => 100 * v)], [.. std.Select(v => 100 * v)]);
            bars.Color = color;
        }
        foreach (var (name, value) in references)
        {
            var h = plot.Add.HorizontalLine(100 * value, width: 1.5f, color: Colors.Gray, pattern: LinePattern.Dashed);
            h.LegendText = name;
        }
        plot.Title(title);
        plot.XLabel("after task");
        plot.YLabel("average accuracy over the classes seen (%)");
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(1, tasks).Select(t => (double)t)], [.. Enumerable.Range(1, tasks).Select(t => t.ToString(CultureInfo.InvariantCulture))]);
        plot.Axes.SetLimits(0.7, tasks + 0.3, 0, 105);
        plot.ShowLegend(Alignment.LowerLeft);
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
    }
}
