using System.Buffers.Binary;
using System.IO.Compression;
using System.Security.Cryptography;

namespace ContinualDiffusion.Data;

/// Fashion-MNIST (Zalando, MIT) as Debian's `dataset-fashion-mnist` package installs it: gzipped IDX files.
/// Checksums are of the decompressed IDX payloads (Debian recompressed the .gz files, so upstream's md5s of the
/// archives do not match; the payloads are the original bytes).
public static class FashionMnist
{
    public const string DefaultFolder = "/usr/share/datasets/fashion-mnist";
    public const string DebianPackage = "dataset-fashion-mnist";
    public const int Side = 28;

    public static readonly string[] ClassNames =
        ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];

    private static readonly Dictionary<string, string> PayloadSha256 = new()
    {
        ["train-images-idx3-ubyte.gz"] = "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ["train-labels-idx1-ubyte.gz"] = "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ["t10k-images-idx3-ubyte.gz"] = "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ["t10k-labels-idx1-ubyte.gz"] = "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    };

    /// Images as bytes [count, 28, 28] (row-major, 0 = background) and labels [count].
    public sealed record Split(byte[] Pixels, byte[] Labels, int Count)
    {
        public ReadOnlySpan<byte> Image(int i) => Pixels.AsSpan(i * Side * Side, Side * Side);

        public IEnumerable<int> IndicesOf(int label) => Enumerable.Range(0, Count).Where(i => Labels[i] == label);
    }

    public static Split LoadTrain(string folder = DefaultFolder) => Load(folder, "train");
    public static Split LoadTest(string folder = DefaultFolder) => Load(folder, "t10k");

    private static Split Load(string folder, string prefix)
    {
        var images = ReadIdx(folder, $"{prefix}-images-idx3-ubyte.gz", expectedDims: 3, out var imgDims);
        var labels = ReadIdx(folder, $"{prefix}-labels-idx1-ubyte.gz", expectedDims: 1, out var lblDims);
        if (imgDims[1] != Side || imgDims[2] != Side || imgDims[0] != lblDims[0])
            throw new InputException($"{folder}: {prefix} images [{string.Join("x", imgDims)}] and labels [{lblDims[0]}] do not match Fashion-MNIST");
        return new Split(images, labels, imgDims[0]);
    }

    /// Reads one gzipped IDX file (magic 0x00000800 | dims, big-endian sizes), verifying its pinned checksum.
    public static byte[] ReadIdx(string folder, string file, int expectedDims, out int[] dims)
    {
        var path = Path.Combine(folder, file);
        if (!File.Exists(path))
            throw new InputException($"{path}: missing; install the Fashion-MNIST data with `sudo apt-get install {DebianPackage}`");
        byte[] payload;
        try
        {
            using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            payload = ms.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InputException($"{path}: not a valid gzip file ({e.Message})");
        }
        if (PayloadSha256.TryGetValue(file, out var expected))
        {
            var actual = Convert.ToHexStringLower(SHA256.HashData(payload));
            if (actual != expected)
                throw new InputException($"{path}: checksum {actual} does not match the pinned {expected}; reinstall {DebianPackage}");
        }
        return ParseIdx(payload, path, expectedDims, out dims);
    }

    internal static byte[] ParseIdx(byte[] payload, string source, int expectedDims, out int[] dims)
    {
        if (payload.Length < 4 || payload[0] != 0 || payload[1] != 0 || payload[2] != 0x08)
            throw new InputException($"{source}: not an IDX file of unsigned bytes");
        int nd = payload[3];
        if (nd != expectedDims) throw new InputException($"{source}: expected {expectedDims} dimensions, found {nd}");
        int header = 4 + 4 * nd;
        if (payload.Length < header) throw new InputException($"{source}: truncated IDX header");
        dims = new int[nd];
        long count = 1;
        for (int i = 0; i < nd; i++)
        {
            dims[i] = (int)BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4 + 4 * i));
            count *= dims[i];
        }
        if (payload.Length - header != count)
            throw new InputException($"{source}: IDX body holds {payload.Length - header} bytes, dimensions need {count}");
        return payload[header..];
    }
}
