using System.Buffers.Binary;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// Concept-image folders holding one bad or unusual file each, for `cdiff train --images`. A folder whose only
/// file is unusable must be refused; a valid but odd image (1×1, 16-bit, animated, grey) may be trained on.
public static class MalformedImages
{
    public sealed record ImageCase(string Name, Expectation Expect, Action<string> Create);

    public static IReadOnlyList<ImageCase> All()
    {
        var png = Encode(new PngEncoder());
        var jpeg = Encode(new JpegEncoder { Quality = 90 });
        var cases = new List<ImageCase>
        {
            new("zero-byte.png", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), [])),
            new("zero-byte.jpg", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.jpg"), [])),
            new("text-named.png", Expectation.Refuse, d => File.WriteAllText(Path.Combine(d, "a.png"), "not an image\n")),
            new("directory-named.png", Expectation.Refuse, d => Directory.CreateDirectory(Path.Combine(d, "a.png"))),
            new("symlink-to-dev-zero.png", Expectation.Refuse, d => File.CreateSymbolicLink(Path.Combine(d, "a.png"), "/dev/zero")),
            new("dangling-symlink.png", Expectation.Refuse, d => File.CreateSymbolicLink(Path.Combine(d, "a.png"), Path.Combine(d, "missing.png"))),
            new("png-bad-crc", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), FlipAt(png, 29))),
            new("png-declared-100000x100000", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), PngWithSize(png, 100_000, 100_000))),
            new("png-declared-0x0", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), PngWithSize(png, 0, 0))),
            new("png-declared-1x2^31", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), PngWithSize(png, 1, int.MaxValue))),
            new("jpeg-declared-65000x65000", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.jpg"), JpegWithSize(jpeg, 65000, 65000))),
            new("jpeg-declared-4-components", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.jpg"), JpegWithComponents(jpeg, 4))),
            new("webp-garbage", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.webp"), [.. "RIFF"u8, 40, 0, 0, 0, .. "WEBPVP8 "u8, .. new byte[32]])),
            new("bmp-truncated", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.bmp"), Encode(new SixLabors.ImageSharp.Formats.Bmp.BmpEncoder())[..40])),
            new("gif-truncated", Expectation.Refuse, d => File.WriteAllBytes(Path.Combine(d, "a.gif"), Encode(new GifEncoder())[..20])),
            new("png-1x1", Expectation.AcceptOrRefuse, d => Save(new Image<Rgb24>(1, 1, new Rgb24(9, 9, 9)), Path.Combine(d, "a.png"))),
            new("png-16-bit", Expectation.AcceptOrRefuse, d => Save(new Image<Rgba64>(33, 17, new Rgba64(1000, 40000, 65535, 65535)), Path.Combine(d, "a.png"), new PngEncoder { BitDepth = PngBitDepth.Bit16 })),
            new("png-grey", Expectation.AcceptOrRefuse, d => Save(new Image<L8>(20, 20, new L8(128)), Path.Combine(d, "a.png"))),
            new("png-transparent", Expectation.AcceptOrRefuse, d => Save(new Image<Rgba32>(20, 20, new Rgba32(0, 0, 0, 0)), Path.Combine(d, "a.png"))),
            new("gif-animated", Expectation.AcceptOrRefuse, d => SaveAnimatedGif(Path.Combine(d, "a.gif"))),
            new("jpeg-named.png", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), jpeg)),
            new("png-huge-text-chunk", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), WithTextChunk(png, 8 << 20))),
        };
        // Captions beside a good image (`cdiff train` reads x.txt for x.png).
        void Captioned(string d, Action<string> caption)
        {
            File.WriteAllBytes(Path.Combine(d, "a.png"), png);
            caption(Path.Combine(d, "a.txt"));
        }
        cases.AddRange(
        [
            new("caption-without-token", Expectation.Refuse, d => Captioned(d, c => File.WriteAllText(c, "a photo of a dog"))),
            new("caption-not-utf8", Expectation.Refuse, d => Captioned(d, c => File.WriteAllBytes(c, [0x7B, 0x7D, 0x20, 0xC3, 0x28, 0xFF]))),
            new("caption-8-MiB", Expectation.Refuse, d => Captioned(d, c => File.WriteAllText(c, "{} " + new string('x', 8 << 20)))),
            new("caption-symlink-to-dev-zero", Expectation.Refuse, d => Captioned(d, c => File.CreateSymbolicLink(c, "/dev/zero"))),
            new("caption-dangling-symlink", Expectation.AcceptOrRefuse, d => Captioned(d, c => File.CreateSymbolicLink(c, Path.Combine(d, "missing.txt")))),
            new("caption-directory-named", Expectation.AcceptOrRefuse, d => Captioned(d, c => Directory.CreateDirectory(c))),
            new("caption-zero-byte", Expectation.Refuse, d => Captioned(d, c => File.WriteAllBytes(c, []))),
            new("caption-token-only", Expectation.AcceptOrRefuse, d => Captioned(d, c => File.WriteAllText(c, "{}"))),
            new("caption-bom-crlf-2000-tokens", Expectation.AcceptOrRefuse, d => Captioned(d, c => File.WriteAllText(c, "\uFEFFa photo of {}\r\n" + string.Join(' ', Enumerable.Repeat("very", 2000)), new System.Text.UTF8Encoding(true)))),
            new("caption-orphan", Expectation.AcceptOrRefuse, d => { File.WriteAllBytes(Path.Combine(d, "a.png"), png); File.WriteAllText(Path.Combine(d, "b.txt"), "no image of this name"); }),
        ]);
        // Truncations at spread-out points of a real PNG and JPEG: headers, first chunk, middle, last bytes.
        foreach (var f in new[] { 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97, 0.995 })
        {
            cases.Add(new($"png-truncated-{f:P1}", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), png[..Math.Max(1, (int)(png.Length * f))])));
            cases.Add(new($"jpeg-truncated-{f:P1}", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.jpg"), jpeg[..Math.Max(1, (int)(jpeg.Length * f))])));
        }
        // Random byte damage after the signature.
        for (int i = 0; i < 8; i++)
        {
            int seed = i;
            cases.Add(new($"png-damaged-{i}", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.png"), Damage(png, 8, seed))));
            cases.Add(new($"jpeg-damaged-{i}", Expectation.AcceptOrRefuse, d => File.WriteAllBytes(Path.Combine(d, "a.jpg"), Damage(jpeg, 2, seed))));
        }
        return cases;
    }

    /// A 64×64 test pattern (so truncations cut through real compressed data) in the given format.
    private static byte[] Encode(SixLabors.ImageSharp.Formats.IImageEncoder encoder)
    {
        using var img = new Image<Rgb24>(64, 64);
        var rng = new Random(3);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                img[x, y] = new Rgb24((byte)(x * 4), (byte)(y * 4), (byte)rng.Next(256));
        using var ms = new MemoryStream();
        img.Save(ms, encoder);
        return ms.ToArray();
    }

    private static void Save<T>(Image<T> img, string path, SixLabors.ImageSharp.Formats.IImageEncoder? encoder = null) where T : unmanaged, IPixel<T>
    {
        using (img) img.Save(path, encoder ?? new PngEncoder());
    }

    private static void SaveAnimatedGif(string path)
    {
        using var img = new Image<Rgba32>(24, 24, new Rgba32(255, 0, 0));
        for (int i = 1; i < 3; i++)
            img.Frames.AddFrame(new Image<Rgba32>(24, 24, new Rgba32(0, (byte)(100 * i), 0)).Frames.RootFrame);
        img.SaveAsGif(path);
    }

    private static byte[] FlipAt(byte[] bytes, int at)
    {
        var b = (byte[])bytes.Clone();
        b[at] ^= 0xFF;
        return b;
    }

    private static byte[] Damage(byte[] bytes, int from, int seed)
    {
        var rng = new Random(seed);
        var b = (byte[])bytes.Clone();
        for (int i = 0; i < 16; i++) b[rng.Next(from, b.Length)] ^= (byte)rng.Next(1, 256);
        return b;
    }

    /// Rewrites the IHDR's width and height (with a valid CRC, so decoders believe it).
    private static byte[] PngWithSize(byte[] png, int width, int height)
    {
        var b = (byte[])png.Clone();
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(16), width);
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(20), height);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(29), Crc32(b.AsSpan(12, 17)));
        return b;
    }

    private static byte[] WithTextChunk(byte[] png, int size)
    {
        var data = new byte[size + 5];
        "Junk\0"u8.CopyTo(data);
        Array.Fill(data, (byte)'x', 5, size);
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(chunk, data.Length);
        "tEXt"u8.CopyTo(chunk.AsSpan(4));
        data.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32(chunk.AsSpan(4, 4 + data.Length)));
        return [.. png[..33], .. chunk, .. png[33..]]; // after the IHDR chunk
    }

    /// Rewrites the first SOF0/SOF2 frame header's height and width.
    private static byte[] JpegWithSize(byte[] jpeg, int width, int height)
    {
        var b = (byte[])jpeg.Clone();
        int sof = FindSof(b);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 5), (ushort)height);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 7), (ushort)width);
        return b;
    }

    private static byte[] JpegWithComponents(byte[] jpeg, byte components)
    {
        var b = (byte[])jpeg.Clone();
        b[FindSof(b) + 9] = components;
        return b;
    }

    /// PNG's CRC-32 (ISO-HDLC, the zlib polynomial) over a chunk's type and data.
    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte x in data)
        {
            crc ^= x;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }

    private static int FindSof(byte[] b)
    {
        for (int i = 2; i + 1 < b.Length; i++)
            if (b[i] == 0xFF && (b[i + 1] == 0xC0 || b[i + 1] == 0xC2)) return i;
        throw new InvalidOperationException("no SOF marker");
    }
}
