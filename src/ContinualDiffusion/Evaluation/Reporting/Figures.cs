using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ScottPlot;

namespace ContinualDiffusion.Evaluation.Reporting;

/// PNG figures of benchmark results (ScottPlot). Each call renders in memory and writes the file atomically.
/// Matrices are lower-triangular jagged arrays as in MethodRun.R: row t holds concepts 0..t.
public static class Figures
{
    public const int DefaultWidth = 800;
    public const int DefaultHeight = 600;

    /// A heat map of a lower-triangular matrix with each defined cell's value printed in it (as a percentage when
    /// asPercent, else with three significant digits); cells above the diagonal stay blank. Row 0 is at the top.
    /// The colour scale spans colorRange, or the defined values' range when null.
    public static void Heatmap(string path, double[][] values, string title, IReadOnlyList<string> rowLabels,
        IReadOnlyList<string> columnLabels, bool asPercent = true, ScottPlot.Range? colorRange = null,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        int rows = values.Length, cols = columnLabels.Count;
        CheckMatrix(values, cols, "heatmap");
        if (rowLabels.Count != rows) throw new ArgumentException($"heatmap: {rowLabels.Count} row labels for {rows} rows");
        FigureFonts.Ensure();

        var grid = new double[rows, cols];
        for (int t = 0; t < rows; t++)
            for (int i = 0; i < cols; i++) grid[t, i] = i <= t ? values[t][i] : double.NaN;

        var plot = new Plot();
        var map = plot.Add.Heatmap(grid);
        map.Colormap = new ScottPlot.Colormaps.Viridis();
        map.NaNCellColor = Colors.Transparent;
        // Cell (t, i) is centred on x = i, y = rows − 1 − t, so ticks and printed values line up with integers.
        map.Rectangle = new CoordinateRect(-0.5, cols - 0.5, -0.5, rows - 0.5);
        var range = colorRange ?? DefinedRange(values);
        map.ManualRange = range;
        plot.Add.ColorBar(map);

        for (int t = 0; t < rows; t++)
            for (int i = 0; i <= t && i < cols; i++)
                AddCellLabel(plot, values[t][i], i, rows - 1 - t, range, asPercent);

        plot.Title(title);
        int charsPerColumn = (int)((width - HeatmapNonDataPixels) / (double)cols / TickCharPixels);
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, cols).Select(i => (double)i)],
            [.. columnLabels.Select(l => WrapLabel(l, charsPerColumn))]);
        plot.Axes.Left.SetTicks([.. Enumerable.Range(0, rows).Select(t => (double)(rows - 1 - t))], [.. rowLabels]);
        plot.Axes.SetLimits(-0.5, cols - 0.5, -0.5, rows - 0.5);
        plot.HideGrid();
        Save(path, plot, width, height);
    }

    /// One panel per method: a line per concept showing its accuracy from the task it was learned in to the last
    /// task (x = task number, 1-based). Panels in the dictionary's order; the concept legend is on the first panel.
    public static void ConceptCurves(string path, IReadOnlyDictionary<string, double[][]> meanRByMethod,
        IReadOnlyList<string> conceptNames, int width = DefaultWidth, int height = DefaultHeight)
    {
        if (meanRByMethod.Count == 0) throw new ArgumentException("concept curves: no methods");
        foreach (var (method, r) in meanRByMethod) CheckMatrix(r, conceptNames.Count, $"concept curves of '{method}'");
        FigureFonts.Ensure();

        var multiplot = new Multiplot();
        int columns = (int)Math.Ceiling(Math.Sqrt(meanRByMethod.Count));
        int gridRows = (int)Math.Ceiling(meanRByMethod.Count / (double)columns);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(gridRows, columns);
        int index = 0;
        foreach (var (method, r) in meanRByMethod)
        {
            // A new Multiplot already holds one plot: use it for the first panel.
            var panel = index == 0 ? multiplot.GetPlot(0) : multiplot.AddPlot();
            PlotConceptCurves(panel, method, r, conceptNames, showLegend: index == 0);
            index++;
        }
        using var image = multiplot.Render(width, height);
        AtomicFile.WriteAllBytes(path, image.GetImageBytes(ImageFormat.Png, 100));
    }

    /// Grouped bars per method: final average A and forgetting F in percent, with ±1 std error bars
    /// (omitted for single-seed methods, whose std is unknown).
    public static void MethodBars(string path, IReadOnlyList<MethodSummary> summaries,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        if (summaries.Count == 0) throw new ArgumentException("method bars: no methods");
        FigureFonts.Ensure();

        var plot = new Plot();
        var colorA = Colors.SteelBlue;
        var colorF = Colors.DarkOrange;
        var bars = new List<Bar>();
        for (int m = 0; m < summaries.Count; m++)
        {
            bars.Add(PercentBar(summaries[m].FinalAverage, position: 3 * m, colorA));
            bars.Add(PercentBar(summaries[m].Forgetting, position: 3 * m + 1, colorF));
        }
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks([.. summaries.Select((_, m) => 3.0 * m + 0.5)], [.. summaries.Select(s => s.Method)]);
        plot.Add.HorizontalLine(0, color: Colors.Black, width: 1);
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "A: final average", FillColor = colorA });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "F: forgetting", FillColor = colorF });
        plot.ShowLegend(Alignment.UpperRight);
        plot.Title("Final average accuracy and forgetting (mean ± std over seeds)");
        plot.YLabel("percent");
        double top = summaries.Max(s => 100 * Math.Max(s.FinalAverage.Mean + s.FinalAverage.Std, s.Forgetting.Mean + s.Forgetting.Std));
        double bottom = summaries.Min(s => 100 * Math.Min(0, s.Forgetting.Mean - s.Forgetting.Std));
        plot.Axes.SetLimitsY(bottom - 2, Math.Max(top, 10) * 1.25);
        plot.HideGrid();
        Save(path, plot, width, height);
    }

    private static void PlotConceptCurves(Plot plot, string method, double[][] r, IReadOnlyList<string> conceptNames, bool showLegend)
    {
        int tasks = r.Length;
        var palette = new ScottPlot.Palettes.Category10();
        for (int i = 0; i < Math.Min(tasks, conceptNames.Count); i++)
        {
            double[] xs = [.. Enumerable.Range(i, tasks - i).Select(t => t + 1.0)];
            double[] ys = [.. Enumerable.Range(i, tasks - i).Select(t => 100 * r[t][i])];
            var line = plot.Add.Scatter(xs, ys, palette.GetColor(i));
            line.LineWidth = 2;
            line.MarkerSize = 6;
            line.LegendText = conceptNames[i];
        }
        plot.Title(method, size: 14);
        plot.XLabel("after task");
        plot.YLabel("accuracy (%)");
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(1, tasks).Select(t => (double)t)], [.. Enumerable.Range(1, tasks).Select(t => t.ToString(CultureInfo.InvariantCulture))]);
        plot.Axes.SetLimits(0.7, tasks + 0.3, -5, 105);
        if (showLegend)
        {
            plot.ShowLegend(Alignment.LowerLeft);
            plot.Legend.FontSize = 10;
        }
        else plot.HideLegend();
    }

    private static Bar PercentBar(MeanStd v, double position, Color color) => new()
    {
        Position = position,
        Value = 100 * v.Mean,
        Error = v.Count > 1 ? 100 * v.Std : 0,
        FillColor = color,
        ValueLabel = (100 * v.Mean).ToString("0.0", CultureInfo.InvariantCulture),
    };

    private static void AddCellLabel(Plot plot, double value, double x, double y, ScottPlot.Range range, bool asPercent)
    {
        string text = asPercent ? (100 * value).ToString("0", CultureInfo.InvariantCulture) + "%" : ReportFormat.Number(value);
        var label = plot.Add.Text(text, x, y);
        label.Alignment = Alignment.MiddleCenter;
        label.LabelFontSize = 16;
        label.LabelBold = true;
        // Viridis is dark at the low end and yellow at the high end: white text on the dark half, black on the light.
        double span = range.Max - range.Min;
        double position = span > 0 ? (value - range.Min) / span : 0.5;
        label.LabelFontColor = position < 0.6 ? Colors.White : Colors.Black;
    }

    // Rough layout numbers for the default tick font (about 7 px per character) and the heat map's margins,
    // colour bar and row labels, used only to decide when column labels must wrap.
    private const double TickCharPixels = 7;
    private const double HeatmapNonDataPixels = 220;

    /// Breaks a label that would overlap its neighbours onto several lines: at " = " first ("<v1>" / "pullover"),
    /// then at spaces.
    internal static string WrapLabel(string label, int maxChars)
    {
        if (label.Length <= maxChars) return label;
        var lines = new List<string>();
        foreach (var part in label.Split(" = "))
        {
            var line = "";
            foreach (var word in part.Split(' '))
            {
                if (line.Length > 0 && line.Length + 1 + word.Length > maxChars) { lines.Add(line); line = word; }
                else line = line.Length == 0 ? word : line + " " + word;
            }
            lines.Add(line);
        }
        return string.Join("\n", lines);
    }

    private static ScottPlot.Range DefinedRange(double[][] values)
    {
        var defined = values.SelectMany((row, t) => row.Take(t + 1)).ToList();
        double min = defined.Min(), max = defined.Max();
        return min < max ? new ScottPlot.Range(min, max) : new ScottPlot.Range(min - 0.5, max + 0.5);
    }

    private static void CheckMatrix(double[][] values, int columns, string what)
    {
        if (values.Length == 0) throw new ArgumentException($"{what}: empty matrix");
        if (values.Length > columns) throw new ArgumentException($"{what}: {values.Length} rows but only {columns} column labels");
        for (int t = 0; t < values.Length; t++)
            if (values[t].Length < t + 1) throw new ArgumentException($"{what}: row {t} has {values[t].Length} entries, expected at least {t + 1}");
    }

    private static void Save(string path, Plot plot, int width, int height) =>
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ImageFormat.Png));
}
