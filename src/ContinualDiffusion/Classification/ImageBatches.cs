using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// Labelled images as model input: [B, 1, side, side] float32 in [−1, 1] (byte / 127.5 − 1), in batches.
public static class ImageBatches
{
    /// The images at `indices` as one tensor, owned by the caller.
    public static Tensor Pixels(LabeledImages set, IReadOnlyList<int> indices, Device? device = null)
    {
        int size = set.Side * set.Side;
        var bytes = new byte[indices.Count * size];
        for (int j = 0; j < indices.Count; j++) set.Image(indices[j]).CopyTo(bytes.AsSpan(j * size));
        using var scope = torch.NewDisposeScope();
        var t = torch.tensor(bytes, [indices.Count, 1, set.Side, set.Side]).to(ScalarType.Float32).DividedBy(127.5).Minus(1.0);
        return (device is null ? t : t.to(device)).MoveToOuterDisposeScope();
    }

    /// Batches of `set` in order (or shuffled by `shuffleSeed`), each (pixels, the images' indices in `set`).
    public static IEnumerable<(Tensor Pixels, int[] Indices)> Batches(LabeledImages set, int batchSize, long? shuffleSeed = null, Device? device = null)
    {
        foreach (var indices in BatchIndices(set.Count, batchSize, shuffleSeed))
            yield return (Pixels(set, indices, device), indices);
    }

    /// The image indices of each batch <see cref="Batches"/> makes, without the pixels (a resumed task skips the
    /// batches it already trained on this way, and gets the same order).
    public static IEnumerable<int[]> BatchIndices(int count, int batchSize, long? shuffleSeed = null)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize));
        var order = Enumerable.Range(0, count).ToArray();
        if (shuffleSeed is { } seed) new Random(unchecked((int)seed)).Shuffle(order);
        for (int start = 0; start < order.Length; start += batchSize)
            yield return order[start..Math.Min(order.Length, start + batchSize)];
    }
}
