using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Imaging;

/// Tiles images into one picture, for looking at many samples at once.
public static class ImageGrid
{
    /// Rows of (N, H, W, 3) images in [0, 1] → one (rows·H, cols·W, 3) image; short rows are padded with white.
    public static Tensor Tile(IReadOnlyList<Tensor> rows, int columns)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows to tile", nameof(rows));
        using var scope = torch.NewDisposeScope();
        long h = rows[0].shape[1], w = rows[0].shape[2];
        var lines = rows.Select(r =>
        {
            var cells = Enumerable.Range(0, columns)
                .Select(i => i < r.shape[0] ? r[i] : torch.ones(h, w, 3))
                .ToArray();
            return torch.cat(cells, dim: 1);
        }).ToArray();
        return torch.cat(lines, dim: 0).MoveToOuterDisposeScope();
    }
}
