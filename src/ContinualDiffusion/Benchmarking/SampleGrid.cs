using ContinualDiffusion.Runtime;
using ContinualDiffusion.Evaluation.Reporting;
using ContinualDiffusion.Imaging;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarking;

/// One method's samples in a sample grid: `Cell(t, i)` = samples (k, H, W, 3) in [0, 1] of concept i after task t
/// (0-based), or null when not learned yet (i > t). Asked only for i ≤ t; the caller keeps owning what it returns.
public sealed record GridPanel(string Title, Func<int, int, Tensor?> Cell);

/// The picture of one or more runs, for a person to look at: rows = concepts (task order, labelled once at the
/// left), columns = after task t; one panel per method, side by side with its title above it and the column
/// headers "after task 1" … "after task T". A cell tiles its k samples near-square (4 → 2×2), each upscaled
/// (nearest) to at least MinSampleSide pixels wide; cells of concepts not learned yet are uniformly grey.
/// Forgetting shows as a row whose garments change shape or turn into another class from left to right.
public static class SampleGrid
{
    /// White border around the whole picture.
    internal const int Margin = 16;
    /// Narrowest row-label column (including LabelPadding); it grows to fit a longer label.
    internal const int LabelColumnMinWidth = 160;
    /// White space between the longest row label and the first panel.
    internal const int LabelPadding = 16;
    /// White space between two panels.
    internal const int PanelGap = 48;
    /// White space between neighbouring cells of a panel.
    internal const int CellGutter = 8;
    /// White space between the samples of one cell.
    internal const int SampleGap = 2;
    /// Height of the panel-title band and of the column-header band above the cells.
    internal const int TitleHeight = 36;
    internal const int HeaderHeight = 28;
    /// Room kept around a header or title so neighbouring texts never touch.
    internal const int TextPadding = 8;
    /// Samples are upscaled by the smallest integer factor that makes them at least this wide (32 px → ×3).
    internal const int MinSampleSide = 96;
    internal const float TitleFontSize = 22f;
    internal const float HeaderFontSize = 16f;
    internal const float LabelFontSize = 18f;
    /// Value of every pixel of a cell whose concept is not learned yet (or has no samples).
    internal const float NotLearnedGrey = 0.9f;

    /// Writes the grid of `panels` (left to right) over `tasks` tasks as a PNG with `text` in its text chunks;
    /// `conceptLabels[i]` labels row i (e.g. "<v1> = pullover"). Written atomically.
    public static void Save(string path, int tasks, IReadOnlyList<string> conceptLabels, IReadOnlyList<GridPanel> panels,
        IReadOnlyDictionary<string, string>? text = null)
    {
        using var scope = torch.NewDisposeScope();
        PngFile.Save(Render(tasks, conceptLabels, panels), path, text);
    }

    /// The picture as an (H, W, 3) float tensor in [0, 1] (in the caller's dispose scope).
    internal static Tensor Render(int tasks, IReadOnlyList<string> conceptLabels, IReadOnlyList<GridPanel> panels)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "a sample grid needs at least one task");
        if (conceptLabels.Count != tasks) throw new ArgumentException($"sample grid: {conceptLabels.Count} concept labels for {tasks} tasks", nameof(conceptLabels));
        if (panels.Count == 0) throw new ArgumentException("sample grid: no panels", nameof(panels));
        var cells = Collect(tasks, panels);
        var (k, h, w) = SampleShape(cells, panels);
        using var fonts = new Typography();
        var g = Geometry.Measure(tasks, conceptLabels, [.. panels.Select(p => p.Title)], k, h, w, fonts);

        using var scope = torch.NewDisposeScope();
        var picture = DrawText(g, conceptLabels, panels, fonts);
        for (int p = 0; p < panels.Count; p++)
            for (int t = 0; t < tasks; t++)
                for (int i = 0; i < tasks; i++)
                {
                    var samples = cells[p][t, i];
                    if (samples is null)
                    {
                        Region(picture, g.CellRect(p, t, i)).FillInPlace(NotLearnedGrey);
                        continue;
                    }
                    var pixels = samples.detach().cpu().to_type(ScalarType.Float32);
                    for (int j = 0; j < k; j++)
                        Region(picture, g.SampleRect(p, t, i, j)).copy_(Upscale(pixels[j], g.Factor));
                }
        return picture.MoveToOuterDisposeScope();
    }

    /// Every panel's cells, each asked once and only for i ≤ t; null where there is nothing to show.
    private static Tensor?[][,] Collect(int tasks, IReadOnlyList<GridPanel> panels) =>
    [
        .. panels.Select(panel =>
        {
            var cells = new Tensor?[tasks, tasks];
            for (int t = 0; t < tasks; t++)
                for (int i = 0; i <= t; i++) cells[t, i] = panel.Cell(t, i);
            return cells;
        }),
    ];

    /// (k, H, W) shared by all cells; a cell of another shape is refused, since the cells must line up.
    private static (int K, int H, int W) SampleShape(Tensor?[][,] cells, IReadOnlyList<GridPanel> panels)
    {
        long[]? shape = null;
        for (int p = 0; p < cells.Length; p++)
            foreach (var (t, i) in Indices(cells[p].GetLength(0)))
            {
                var c = cells[p][t, i];
                if (c is null) continue;
                if (c.dim() != 4 || c.shape[3] != 3 || c.shape[0] < 1)
                    throw new ArgumentException($"sample grid: panel '{panels[p].Title}', task {t + 1}, concept {i + 1}: expected samples (k, H, W, 3), got [{string.Join(", ", c.shape)}]");
                shape ??= c.shape;
                if (!c.shape.SequenceEqual(shape))
                    throw new ArgumentException($"sample grid: panel '{panels[p].Title}', task {t + 1}, concept {i + 1}: samples [{string.Join(", ", c.shape)}] differ from the others' [{string.Join(", ", shape)}]");
            }
        return shape is null
            ? throw new ArgumentException("sample grid: no panel has any samples")
            : ((int)shape[0], (int)shape[1], (int)shape[2]);
    }

    private static IEnumerable<(int T, int I)> Indices(int tasks) =>
        Enumerable.Range(0, tasks).SelectMany(t => Enumerable.Range(0, tasks).Select(i => (t, i)));

    /// White picture of the right size with the titles, column headers and row labels drawn in black.
    private static Tensor DrawText(Geometry g, IReadOnlyList<string> conceptLabels, IReadOnlyList<GridPanel> panels, Typography fonts)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(g.Width, g.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        using (var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true })
        {
            canvas.Clear(SKColors.White);
            for (int p = 0; p < panels.Count; p++)
            {
                DrawCentred(canvas, panels[p].Title, g.TitleRect(p), fonts.Title, ink);
                for (int t = 0; t < g.Tasks; t++)
                    DrawCentred(canvas, HeaderText(t), g.HeaderRect(p, t), fonts.Header, ink);
            }
            for (int i = 0; i < g.Tasks; i++)
            {
                var (x, y, _, h) = g.LabelRect(i);
                canvas.DrawText(conceptLabels[i], x, Baseline(y, h, fonts.Label), SKTextAlign.Left, fonts.Label, ink);
            }
            canvas.Flush();
        }
        // Rgba8888 rows may be padded: view them at their stride, then keep the picture's width and R, G, B.
        var raw = torch.tensor(bitmap.Bytes, [g.Height, bitmap.RowBytes / 4, 4]);
        return raw.narrow(1, 0, g.Width).narrow(2, 0, 3).to_type(ScalarType.Float32).DivideInPlace(255f);
    }

    internal static string HeaderText(int t) => $"after task {t + 1}";

    private static void DrawCentred(SKCanvas canvas, string text, (int X, int Y, int W, int H) r, SKFont font, SKPaint ink) =>
        canvas.DrawText(text, r.X + r.W / 2f, Baseline(r.Y, r.H, font), SKTextAlign.Center, font, ink);

    /// The baseline that centres the font's ascent-to-descent box vertically in [y, y + h).
    private static float Baseline(int y, int h, SKFont font)
    {
        var m = font.Metrics;
        return y + h / 2f - (m.Ascent + m.Descent) / 2f;
    }

    private static Tensor Region(Tensor picture, (int X, int Y, int W, int H) r) =>
        picture.narrow(0, r.Y, r.H).narrow(1, r.X, r.W);

    /// (H, W, 3) → (H·f, W·f, 3), each pixel repeated f × f times.
    private static Tensor Upscale(Tensor sample, int factor) =>
        factor == 1 ? sample : sample.repeat_interleave(factor, dim: 0).repeat_interleave(factor, dim: 1);

    /// The fonts of the grid: the family figures use (FigureFonts, which fails loudly when the machine has no
    /// font), bold for panel titles.
    internal sealed class Typography : IDisposable
    {
        public SKFont Title { get; }
        public SKFont Header { get; }
        public SKFont Label { get; }

        public Typography()
        {
            string family = FigureFonts.Ensure();
            // ScottPlot caches and owns the typefaces; only the fonts made from them are ours to dispose.
            var regular = ScottPlot.Fonts.GetTypeface(family, bold: false, italic: false)
                          ?? throw new InvalidOperationException($"sample grid: font '{family}' has no regular typeface");
            var bold = ScottPlot.Fonts.GetTypeface(family, bold: true, italic: false) ?? regular;
            Title = Font(bold, TitleFontSize);
            Header = Font(regular, HeaderFontSize);
            Label = Font(regular, LabelFontSize);
        }

        private static SKFont Font(SKTypeface typeface, float size) =>
            new(typeface, size) { Edging = SKFontEdging.Antialias, Subpixel = true };

        public void Dispose()
        {
            Title.Dispose();
            Header.Dispose();
            Label.Dispose();
        }
    }

    /// Where everything goes, in pixels from the top-left corner. Columns widen to fit their header and panels to
    /// fit their title (the cells stay centred in them); with short texts every size follows from the constants.
    internal sealed record Geometry(int Tasks, int Samples, int SampleHeight, int SampleWidth, int Factor,
        int LabelWidth, int ColumnWidth, int[] PanelX, int[] PanelWidth, int Width, int Height)
    {
        /// Samples of a cell are tiled in TileColumns × TileRows, filled row by row (4 → 2 × 2, 2 → 2 × 1, 3 → 2 × 2).
        public int TileColumns => TileColumnsFor(Samples);
        public int TileRows => (Samples + TileColumns - 1) / TileColumns;
        public int CellWidth => TileColumns * SampleWidth * Factor + (TileColumns - 1) * SampleGap;
        public int CellHeight => TileRows * SampleHeight * Factor + (TileRows - 1) * SampleGap;
        public int GridWidth => Tasks * ColumnWidth + (Tasks - 1) * CellGutter;
        public int GridTop => Margin + TitleHeight + HeaderHeight;

        public static int TileColumnsFor(int k) => (int)Math.Ceiling(Math.Sqrt(k));
        public static int FactorFor(int sampleWidth) => Math.Max(1, (MinSampleSide + sampleWidth - 1) / sampleWidth);

        public static Geometry Measure(int tasks, IReadOnlyList<string> conceptLabels, IReadOnlyList<string> titles,
            int k, int sampleHeight, int sampleWidth, Typography fonts)
        {
            int factor = FactorFor(sampleWidth);
            int columns = TileColumnsFor(k);
            int cellWidth = columns * sampleWidth * factor + (columns - 1) * SampleGap;
            int headerWidth = Enumerable.Range(0, tasks).Max(t => Ceil(fonts.Header.MeasureText(HeaderText(t)))) + TextPadding;
            int columnWidth = Math.Max(cellWidth, headerWidth);
            int gridWidth = tasks * columnWidth + (tasks - 1) * CellGutter;
            int labelWidth = Math.Max(LabelColumnMinWidth, conceptLabels.Max(l => Ceil(fonts.Label.MeasureText(l))) + LabelPadding);

            var panelX = new int[titles.Count];
            var panelWidth = new int[titles.Count];
            int x = Margin + labelWidth;
            for (int p = 0; p < titles.Count; p++)
            {
                panelX[p] = x;
                panelWidth[p] = Math.Max(gridWidth, Ceil(fonts.Title.MeasureText(titles[p])) + TextPadding);
                x += panelWidth[p] + PanelGap;
            }
            int width = x - PanelGap + Margin;
            int rows = (k + columns - 1) / columns;
            int cellHeight = rows * sampleHeight * factor + (rows - 1) * SampleGap;
            int height = Margin + TitleHeight + HeaderHeight + tasks * cellHeight + (tasks - 1) * CellGutter + Margin;
            return new Geometry(tasks, k, sampleHeight, sampleWidth, factor, labelWidth, columnWidth, panelX, panelWidth, width, height);
        }

        /// Left edge of column t of panel p (the panel's cells are centred under its title).
        private int ColumnX(int p, int t) => PanelX[p] + (PanelWidth[p] - GridWidth) / 2 + t * (ColumnWidth + CellGutter);
        private int RowY(int i) => GridTop + i * (CellHeight + CellGutter);

        /// The cell of concept i after task t in panel p.
        public (int X, int Y, int W, int H) CellRect(int p, int t, int i) =>
            (ColumnX(p, t) + (ColumnWidth - CellWidth) / 2, RowY(i), CellWidth, CellHeight);

        /// Sample j of that cell, upscaled.
        public (int X, int Y, int W, int H) SampleRect(int p, int t, int i, int j)
        {
            var (x, y, _, _) = CellRect(p, t, i);
            int w = SampleWidth * Factor, h = SampleHeight * Factor;
            return (x + j % TileColumns * (w + SampleGap), y + j / TileColumns * (h + SampleGap), w, h);
        }

        public (int X, int Y, int W, int H) TitleRect(int p) => (PanelX[p], Margin, PanelWidth[p], TitleHeight);
        public (int X, int Y, int W, int H) HeaderRect(int p, int t) => (ColumnX(p, t), Margin + TitleHeight, ColumnWidth, HeaderHeight);
        public (int X, int Y, int W, int H) LabelRect(int i) => (Margin, RowY(i), LabelWidth - LabelPadding, CellHeight);

        private static int Ceil(float v) => (int)Math.Ceiling(v);
    }

    /// The rectangle of cell (t, i) of panel `panel` in the picture Render makes of these arguments.
    internal static (int X, int Y, int W, int H) CellRect(int tasks, IReadOnlyList<string> conceptLabels, IReadOnlyList<string> titles,
        int k, int sampleHeight, int sampleWidth, int panel, int t, int i)
        => Layout(tasks, conceptLabels, titles, k, sampleHeight, sampleWidth).CellRect(panel, t, i);

    /// Everything's rectangles for the picture Render makes of these arguments (tests locate texts with it).
    internal static Geometry Layout(int tasks, IReadOnlyList<string> conceptLabels, IReadOnlyList<string> titles,
        int k, int sampleHeight, int sampleWidth)
    {
        using var fonts = new Typography();
        return Geometry.Measure(tasks, conceptLabels, titles, k, sampleHeight, sampleWidth, fonts);
    }
}
