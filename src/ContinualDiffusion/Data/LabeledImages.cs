namespace ContinualDiffusion.Data;

/// A labelled image set for classification: square single-channel images as bytes [count, side, side]
/// (row-major, 0 = background) with one class index each, and the names of the classes the indices refer to.
/// Fashion-MNIST, the MNIST digits and a user's class folders all arrive in this form.
public sealed record LabeledImages(byte[] Pixels, int[] Labels, int Side, IReadOnlyList<string> ClassNames)
{
    public int Count => Labels.Length;

    public ReadOnlySpan<byte> Image(int i) => Pixels.AsSpan(i * Side * Side, Side * Side);

    /// Builds the set from (pixels, label) pairs of `side`×`side` images.
    public static LabeledImages From(IReadOnlyList<(byte[] Pixels, int Label)> items, IReadOnlyList<string> classNames, int side = 28)
    {
        var pixels = new byte[items.Count * side * side];
        var labels = new int[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            if (items[i].Pixels.Length != side * side)
                throw new ArgumentException($"image {i} has {items[i].Pixels.Length} pixels, expected {side}×{side}", nameof(items));
            if (items[i].Label < 0 || items[i].Label >= classNames.Count)
                throw new ArgumentException($"image {i} has label {items[i].Label}, expected 0..{classNames.Count - 1}", nameof(items));
            items[i].Pixels.CopyTo(pixels, i * side * side);
            labels[i] = items[i].Label;
        }
        return new LabeledImages(pixels, labels, side, classNames);
    }

    /// A Fashion-MNIST split in this form (class names from FashionMnist.ClassNames).
    public static LabeledImages FromFashion(FashionMnist.Split split) =>
        new(split.Pixels, [.. split.Labels.Take(split.Count).Select(b => (int)b)], FashionMnist.Side, FashionMnist.ClassNames);

    /// The images whose label is in `classes`, in their original order, labels unchanged.
    public LabeledImages OfClasses(IReadOnlySet<int> classes)
    {
        var keep = Enumerable.Range(0, Count).Where(i => classes.Contains(Labels[i])).ToArray();
        return Select(keep);
    }

    /// The images at `indices`, in that order.
    public LabeledImages Select(IReadOnlyList<int> indices)
    {
        int size = Side * Side;
        var pixels = new byte[indices.Count * size];
        var labels = new int[indices.Count];
        for (int j = 0; j < indices.Count; j++)
        {
            Pixels.AsSpan(indices[j] * size, size).CopyTo(pixels.AsSpan(j * size));
            labels[j] = Labels[indices[j]];
        }
        return new LabeledImages(pixels, labels, Side, ClassNames);
    }

    /// SHA-256 (hex) of the images, their labels and the class names, in order: identifies a training set (a resumed
    /// task must see the one it was interrupted on).
    public string ContentHash()
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        sha.AppendData(BitConverter.GetBytes(Side));
        sha.AppendData(Pixels);
        sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Labels.AsSpan()));
        foreach (var name in ClassNames) sha.AppendData(System.Text.Encoding.UTF8.GetBytes(name + "\n"));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// Images per class, indexed by class.
    public int[] CountsPerClass()
    {
        var counts = new int[ClassNames.Count];
        foreach (var l in Labels) counts[l]++;
        return counts;
    }
}
