using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Benchmarking;

public class SampleGridTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-grid-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string[] Labels(int tasks) => [.. Enumerable.Range(1, tasks).Select(i => $"<v{i}> = c{i}")];

    /// Sample j of concept i after task t in panel p: a per-pixel ramp in red, the cell's identity in green and
    /// the sample's index in blue, all multiples of 1/255 so they survive a PNG exactly.
    private static Tensor Samples(int p, int t, int i, int k, int h, int w)
    {
        using var modulus = 256f.ToScalar();
        var ramp = OwnedScalars.Arange(0, h * w, ScalarType.Float32).reshape(h, w).remainder(modulus).DividedBy(255f);
        var cell = OwnedScalars.Full([h, w], (p * 49 + t * 7 + i + 1) / 255f);
        return torch.stack([.. Enumerable.Range(0, k).Select(j => torch.stack([ramp, cell, OwnedScalars.Full([h, w], (j * 60 + 15) / 255f)], dim: -1))]);
    }

    private static GridPanel Panel(string title, int p, int k, int h, int w) =>
        new(title, (t, i) => Samples(p, t, i, k, h, w));

    private static Tensor Region(Tensor picture, (int X, int Y, int W, int H) r) =>
        picture.narrow(0, r.Y, r.H).narrow(1, r.X, r.W);

    [Theory]
    [InlineData(3, 2, 4, 32, 32)] // ×3, 2 × 2 samples
    [InlineData(2, 1, 3, 32, 32)] // ×3, 2 × 2 with one empty
    [InlineData(2, 3, 2, 16, 24)] // ×4, 2 × 1, not square
    [InlineData(1, 1, 1, 64, 64)] // ×2, one sample
    public void The_size_follows_from_tasks_panels_samples_and_the_upscale_factor(int tasks, int panels, int k, int h, int w)
    {
        int factor = (int)Math.Ceiling(SampleGrid.MinSampleSide / (double)w);
        int columns = (int)Math.Ceiling(Math.Sqrt(k)), rows = (k + columns - 1) / columns;
        int cellW = columns * w * factor + (columns - 1) * SampleGrid.SampleGap;
        int cellH = rows * h * factor + (rows - 1) * SampleGrid.SampleGap;
        int panelW = tasks * cellW + (tasks - 1) * SampleGrid.CellGutter;
        int width = 2 * SampleGrid.Margin + SampleGrid.LabelColumnMinWidth + panels * panelW + (panels - 1) * SampleGrid.PanelGap;
        int height = 2 * SampleGrid.Margin + SampleGrid.TitleHeight + SampleGrid.HeaderHeight + tasks * cellH + (tasks - 1) * SampleGrid.CellGutter;

        var picture = SampleGrid.Render(tasks, Labels(tasks), [.. Enumerable.Range(0, panels).Select(p => Panel($"M{p}", p, k, h, w))]);

        Assert.Equal(new long[] { height, width, 3 }, picture.shape);
        Assert.True(w * factor >= SampleGrid.MinSampleSide && w * (factor - 1) < SampleGrid.MinSampleSide);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(3)]
    public void A_learned_cell_holds_its_samples_nearest_upscaled_and_tiled_row_by_row(int k)
    {
        const int tasks = 3, h = 32, w = 32, factor = 3, side = 96;
        var labels = Labels(tasks);
        string[] titles = ["A", "B"];
        var picture = SampleGrid.Render(tasks, labels, [Panel(titles[0], 0, k, h, w), Panel(titles[1], 1, k, h, w)]);

        foreach (var (p, t, i) in new[] { (1, 2, 1), (0, 0, 0), (1, 1, 0) })
        {
            var rect = SampleGrid.CellRect(tasks, labels, titles, k, h, w, p, t, i);
            Assert.Equal((2 * side + SampleGrid.SampleGap, 2 * side + SampleGrid.SampleGap), (rect.W, rect.H));
            // Built independently of the grid's code: white, sample j at column j % 2, row j / 2, each pixel 3 × 3.
            var expected = torch.ones(rect.H, rect.W, 3);
            var samples = Samples(p, t, i, k, h, w);
            for (int j = 0; j < k; j++)
            {
                var up = samples[j].unsqueeze(1).unsqueeze(3).expand(h, factor, w, factor, 3).reshape(side, side, 3);
                int x = j % 2 * (side + SampleGrid.SampleGap), y = j / 2 * (side + SampleGrid.SampleGap);
                expected.narrow(0, y, side).narrow(1, x, side).copy_(up);
            }
            Assert.True(0f == (expected - Region(picture, rect)).abs().max().item<float>(), $"cell (panel {p}, task {t}, concept {i})");
        }
    }

    [Fact]
    public void A_cell_not_learned_yet_is_uniformly_grey_and_its_callback_is_never_asked()
    {
        const int tasks = 3, k = 4, h = 8, w = 8;
        var labels = Labels(tasks);
        var asked = new List<(int, int)>();
        var kept = Samples(1, 2, 2, k, h, w);
        var panels = new[]
        {
            Panel("A", 0, k, h, w),
            // A method that has nothing for concept 1 after task 2 (e.g. it failed to sample) gets a grey cell too.
            new GridPanel("B", (t, i) => { asked.Add((t, i)); return (t, i) == (2, 1) ? null : (t, i) == (2, 2) ? kept : Samples(1, t, i, k, h, w); }),
        };
        var picture = SampleGrid.Render(tasks, labels, panels);
        Assert.False(kept.IsInvalid, "the grid disposed a tensor its caller owns");

        Assert.All(asked, a => Assert.True(a.Item2 <= a.Item1, $"asked for concept {a.Item2} after task {a.Item1}"));
        Assert.Equal(6, asked.Count);
        foreach (var (p, t, i) in new[] { (0, 0, 2), (1, 0, 1), (1, 1, 2), (1, 2, 1) })
        {
            var cell = Region(picture, SampleGrid.CellRect(tasks, labels, ["A", "B"], k, h, w, p, t, i));
            Assert.Equal(SampleGrid.NotLearnedGrey, cell.min().item<float>());
            Assert.Equal(SampleGrid.NotLearnedGrey, cell.max().item<float>());
        }
        var learned = Region(picture, SampleGrid.CellRect(tasks, labels, ["A", "B"], k, h, w, 1, 2, 2));
        Assert.NotEqual(SampleGrid.NotLearnedGrey, learned.max().item<float>());
    }

    [Fact]
    public void Row_labels_titles_and_headers_are_dark_text_and_the_gap_between_panels_stays_white()
    {
        const int tasks = 2, k = 4, h = 32, w = 32;
        string[] labels = ["<v1> = pullover", "<v2> = coat"];
        string[] titles = ["C-LoRA (λ = 10)", "Sequential LoRA"];
        var picture = SampleGrid.Render(tasks, labels, [Panel(titles[0], 0, k, h, w), Panel(titles[1], 1, k, h, w)]);
        var g = SampleGrid.Layout(tasks, labels, titles, k, h, w);

        static float Darkest(Tensor region) => region.mean([2]).min().item<float>();
        static int DarkPixels(Tensor region)
        {
            using var half = 0.5f.ToScalar();
            return (int)region.mean([2]).lt(half).sum().item<long>();
        }
        for (int i = 0; i < tasks; i++)
            Assert.True(DarkPixels(Region(picture, g.LabelRect(i))) > 50, $"row label {i} has no text");
        Assert.True(DarkPixels(Region(picture, g.TitleRect(0))) > 50);
        Assert.True(DarkPixels(Region(picture, g.TitleRect(1))) > 50, "the second panel has no title");
        Assert.True(DarkPixels(Region(picture, g.HeaderRect(1, 1))) > 30, "the second panel's last column has no header");
        Assert.True(Darkest(Region(picture, g.TitleRect(1))) < 0.1f, "title text should be black");

        // Between the first panel's last column and the second panel's first: white from top to bottom.
        var left = g.CellRect(0, tasks - 1, 0);
        var right = g.CellRect(1, 0, 0);
        int gapX = left.X + left.W, gapW = right.X - gapX;
        Assert.True(gapW >= SampleGrid.PanelGap, $"gap between panels is {gapW} px");
        var gap = picture.narrow(0, SampleGrid.Margin + SampleGrid.TitleHeight, g.Height - SampleGrid.Margin - SampleGrid.TitleHeight).narrow(1, gapX, gapW);
        Assert.Equal(1f, gap.min().item<float>());
    }

    [Fact]
    public void Save_writes_the_picture_with_its_text_metadata()
    {
        const int tasks = 2, k = 2, h = 16, w = 16;
        var labels = Labels(tasks);
        GridPanel[] panels = [Panel("A", 0, k, h, w)];
        var text = new Dictionary<string, string> { ["method"] = "A", ["seed"] = "7", ["layout"] = "rows: concepts" };
        string path = Path.Combine(_dir, "grid.png");

        SampleGrid.Save(path, tasks, labels, panels, text);

        var (image, read) = PngFile.Load(path);
        using (image)
        {
            Assert.Equal(text, read);
            var expected = SampleGrid.Render(tasks, labels, panels);
            Assert.Equal(expected.shape, image.shape);
            // Bytes: round(x · 255); the grey 0.9 lies halfway between two byte values.
            Assert.InRange((image - expected).abs().max().item<float>(), 0f, 0.5f / 255f + 1e-6f);
        }
    }

    [Fact]
    public void Cells_of_different_shapes_and_a_wrong_number_of_labels_are_refused()
    {
        var odd = new GridPanel("odd", (t, i) => Samples(1, t, i, 4, 16, 16));
        var ex = Assert.Throws<ArgumentException>(() => SampleGrid.Render(2, Labels(2), [Panel("A", 0, 4, 8, 8), odd]));
        Assert.Contains("odd", ex.Message);
        Assert.Throws<ArgumentException>(() => SampleGrid.Render(3, Labels(2), [Panel("A", 0, 4, 8, 8)]));
        Assert.Throws<ArgumentException>(() => SampleGrid.Render(2, Labels(2), [new GridPanel("empty", (_, _) => null)]));
    }
}
