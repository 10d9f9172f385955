using ContinualDiffusion.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarking;

/// The picture of one run: rows = concepts (task order), columns = after task t, each cell a strip of a few
/// samples of that concept generated after that task; cells of concepts not yet learned stay white. Forgetting
/// shows as a row whose garments change shape or turn into another class from left to right.
public static class SampleGrid
{
    private const int Gutter = 6;       // white pixels between the columns of different tasks
    private const int MinCellSide = 64; // small models draw 32 px images: scale up (nearest) so the grid is readable

    /// `cell(t, i)`: samples (k, H, W, 3) of concept i after task t, or null for i > t.
    public static void Save(string path, int tasks, Func<int, int, Tensor?> cell, IReadOnlyDictionary<string, string>? text = null)
    {
        using var scope = torch.NewDisposeScope();
        var sample = Enumerable.Range(0, tasks).Select(t => cell(t, 0)).First(c => c is not null)!;
        long h = sample.shape[1], w = sample.shape[2];
        int k = (int)sample.shape[0];
        var rows = new List<Tensor>();
        for (int i = 0; i < tasks; i++)
        {
            var cells = Enumerable.Range(0, tasks).Select(t => Strip(t >= i ? cell(t, i) : null, k, h, w)).ToArray();
            rows.Add(torch.stack(cells));
        }
        var grid = ImageGrid.Tile(rows, tasks);
        PngFile.Save(Upscale(grid, h), path, text);
    }

    /// k samples side by side plus the gutter; white when there are none.
    private static Tensor Strip(Tensor? samples, int k, long h, long w)
    {
        var cells = Enumerable.Range(0, k)
            .Select(j => samples is not null && j < samples.shape[0] ? samples[j] : torch.ones(h, w, 3))
            .Append(torch.ones(h, Gutter, 3));
        return torch.cat([.. cells], dim: 1);
    }

    private static Tensor Upscale(Tensor image, long side)
    {
        int factor = (int)Math.Max(1, Math.Ceiling(MinCellSide / (double)side));
        if (factor == 1) return image;
        var x = image.permute(2, 0, 1).unsqueeze(0);
        var up = nn.functional.interpolate(x, scale_factor: [factor, factor], mode: InterpolationMode.Nearest);
        return up[0].permute(1, 2, 0).contiguous();
    }
}
