using ContinualDiffusion.Runtime;
using System.Security.Cryptography;
using System.Text;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Imaging;

/// A concept's training images, ready for the VAE, in [-1, 1]: one group (N, 3, R, R) of every image, or with aspect
/// buckets one group per bucket size used (images of one group share a size). `Captions`: per image, its caption (with
/// "{}" where the concept's token goes) or null (the prompt templates); null when no image has one.
public sealed record ConceptImages(IReadOnlyList<ImageGroup> Groups, IReadOnlyList<string> Files, IReadOnlyList<string> Skipped, string SetHash,
    IReadOnlyList<Caption?>? Captions = null) : IDisposable
{
    public int Count => Files.Count;

    /// Every image as one (N, 3, R, R) tensor: only when all share a size (no buckets, or a single one used).
    public Tensor Pixels => Groups.Count == 1 ? Groups[0].Pixels
        : throw new InvalidOperationException($"the images are in {Groups.Count} aspect buckets of different sizes: read Groups");

    public void Dispose()
    {
        foreach (var g in Groups) g.Pixels.Dispose();
    }
}

/// Images of one size: `Indices` are their places in ConceptImages.Files, `Pixels` (n, 3, Height, Width) in that order.
public sealed record ImageGroup(int Width, int Height, IReadOnlyList<int> Indices, Tensor Pixels);

/// An image's caption and the file it came from.
public sealed record Caption(string Text, string File);

/// Loads a folder of images the way a user drops them there: PNG, JPEG, WebP or BMP (detected by content),
/// EXIF orientation applied, converted to RGB (transparency composited on white), centre-cropped to a square
/// (or, with aspect buckets, to its bucket's width:height) and resized to the training resolution (or the bucket's size). Files that are not images, or are corrupt, are skipped with a
/// warning naming each; images over a pixel limit are refused before their pixels are decoded.
public static class ImageFolder
{
    public const long DefaultMaxPixels = 40_000_000;

    /// The caption file of an image: the same name with this extension (kohya's and OneTrainer's convention).
    public const string CaptionExtension = ".txt";

    private const int MaxCaptionBytes = 64 * 1024;

    /// `readCaptions`: an image `x.png` with a `x.txt` beside it is trained with that caption ("{}" marks the token);
    /// the set hash then covers the captions too. Without it (or without any caption) nothing changes.
    /// `buckets`: each image goes to its aspect bucket (AspectBuckets) instead of the resolution's square.
    public static ConceptImages Load(string folder, int resolution, long maxPixels = DefaultMaxPixels, Action<string>? warn = null, bool readCaptions = false,
        AspectBuckets? buckets = null)
    {
        var root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new InputException($"--images {root}: folder not found");
        var files = Directory.EnumerateFiles(root).Where(f => !Path.GetFileName(f).StartsWith('.')).Order(StringComparer.Ordinal).ToList();
        var captionFiles = readCaptions ? files.Where(IsCaptionFile).ToList() : [];
        files = [.. files.Except(captionFiles)];
        // Captions by the image's name without extension (x.png ↔ x.txt or x.TXT); two captions of one name are ambiguous.
        var captionByStem = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var c in captionFiles)
            if (!captionByStem.TryAdd(Stem(c), c))
                throw new InputException($"{c}: two captions for the images named {Path.GetFileName(Stem(c))} ({Path.GetFileName(captionByStem[Stem(c)])} and {Path.GetFileName(c)}); keep one");
        if (files.Count == 0)
            throw new InputException(captionFiles.Count == 0
                ? $"--images {root}: the folder is empty (expected PNG, JPEG, WebP or BMP images)"
                : $"--images {root}: the folder holds only captions ({CaptionExtension}), no image (expected PNG, JPEG, WebP or BMP images)");

        var tensors = new List<Tensor>();
        var used = new List<string>();
        var skipped = new List<string>();
        try
        {
            foreach (var file in files)
            {
                var t = TryLoadOne(file, resolution, maxPixels, out var problem, buckets);
                if (t is null)
                {
                    skipped.Add(file);
                    warn?.Invoke($"{file}: skipped ({problem})");
                    continue;
                }
                tensors.Add(t);
                used.Add(file);
            }
            if (tensors.Count == 0)
                throw new InputException($"--images {root}: none of the {files.Count} file(s) is a usable image (expected PNG, JPEG, WebP or BMP)");
            var captions = used.Select(f => captionByStem.TryGetValue(Stem(f), out var c) ? new Caption(ReadCaption(c), c) : null).ToList();
            var usedStems = used.Select(Stem).ToHashSet(StringComparer.Ordinal);
            foreach (var orphan in captionFiles.Where(c => !usedStems.Contains(Stem(c))).Order(StringComparer.Ordinal))
                warn?.Invoke($"{orphan}: ignored (a caption, but no usable image of that name)");
            bool captioned = captions.Any(c => c is not null);
            var hashed = captioned ? used.Zip(captions).SelectMany(p => p.Second is { } c ? new[] { p.First, c.File } : [p.First]) : used;
            return new ConceptImages(Group(tensors), used, skipped, SetHash(root, hashed), captioned ? captions : null);
        }
        finally
        {
            foreach (var t in tensors) t.Dispose();
        }
    }

    /// The images stacked by size: one group when all share one (always without buckets), else one per size, in
    /// width-then-height order.
    private static List<ImageGroup> Group(List<Tensor> images)
    {
        if (images.All(t => t.shape[1] == images[0].shape[1] && t.shape[2] == images[0].shape[2]))
            return [new ImageGroup((int)images[0].shape[2], (int)images[0].shape[1], [.. Enumerable.Range(0, images.Count)], torch.stack(images))];
        return [.. Enumerable.Range(0, images.Count)
            .GroupBy(i => (Width: (int)images[i].shape[2], Height: (int)images[i].shape[1]))
            .OrderBy(g => g.Key.Width).ThenBy(g => g.Key.Height)
            .Select(g => new ImageGroup(g.Key.Width, g.Key.Height, [.. g], torch.stack(g.Select(i => images[i]))))];
    }

    private static bool IsCaptionFile(string f) => Path.GetExtension(f).Equals(CaptionExtension, StringComparison.OrdinalIgnoreCase);

    private static string Stem(string file) => Path.Combine(Path.GetDirectoryName(file)!, Path.GetFileNameWithoutExtension(file));

    /// A caption: UTF-8 text, lines joined by spaces, with "{}" where the token goes.
    private static string ReadCaption(string file)
    {
        string text = BoundedTextFile.Read(file, MaxCaptionBytes, (problem, detail) => problem switch
        {
            BoundedTextFile.Problem.TooLarge => $"{file}: a caption of more than {MaxCaptionBytes:N0} bytes (at most {MaxCaptionBytes:N0}; the text encoder reads 77 tokens)",
            BoundedTextFile.Problem.Unreadable => $"{file}: cannot read the caption ({detail})",
            _ => $"{file}: a caption must be UTF-8 text",
        });
        var caption = string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (!caption.Contains("{}"))
            throw new InputException($"{file}: a caption must contain {{}} where the new token goes, e.g. \"a photo of {{}} on a beach\" (found \"{(caption.Length > 60 ? caption[..60] + "..." : caption)}\")");
        return caption;
    }

    /// One image as (3, R, R) in [-1, 1] (oriented, RGB, centre-cropped, resized), or with `buckets` as (3, h, w) of its
    /// bucket (cropped to the bucket's width:height first, so a square bucket gives exactly the square's pixels); null
    /// with the reason when the file is not a usable image.
    internal static Tensor? TryLoadOne(string file, int resolution, long maxPixels, out string problem, AspectBuckets? buckets = null)
    {
        try
        {
            var info = Image.Identify(file);
            if (info is null) { problem = "not a PNG, JPEG, WebP or BMP image"; return null; }
            long pixels = (long)info.Width * info.Height;
            if (pixels > maxPixels)
                throw new InputException($"{file}: {info.Width}x{info.Height} is {pixels:N0} pixels, over the limit of {maxPixels:N0} (a decompression bomb or a photo far larger than training needs)");
            using var image = Image.Load<Rgba32>(file);
            image.Mutate(x => x.AutoOrient());
            var (width, height) = buckets?.For(image.Width, image.Height) ?? (resolution, resolution);
            var crop = CentreCrop(image.Width, image.Height, width, height);
            image.Mutate(x => x
                .Crop(crop)
                .Resize(width, height, KnownResamplers.Lanczos3)
                .BackgroundColor(Color.White));
            using var rgb = image.CloneAs<Rgb24>();
            var bytes = new byte[width * height * 3];
            rgb.CopyPixelDataTo(bytes);
            problem = "";
            using var scope = torch.NewDisposeScope();
            var scaled = torch.tensor(bytes, [height, width, 3]).to_type(ScalarType.Float32).DividedBy(127.5f).Minus(1f);
            return scaled.permute(2, 0, 1).contiguous().MoveToOuterDisposeScope();
        }
        catch (UnknownImageFormatException) { problem = "not a PNG, JPEG, WebP or BMP image"; return null; }
        catch (InvalidImageContentException e) { problem = $"corrupt image: {e.Message}"; return null; }
        catch (NotSupportedException e) { problem = $"unsupported image: {e.Message}"; return null; }
        catch (ImageFormatException e) { problem = $"corrupt image: {e.Message}"; return null; }
        catch (Exception e) when (e is not InputException and not OutOfMemoryException and not IOException and not UnauthorizedAccessException)
        {
            // A decoder that trips over hostile bytes (index or arithmetic errors): the file is unusable, not the run.
            problem = $"cannot decode: {e.GetType().Name}: {e.Message}";
            return null;
        }
    }

    /// The largest centred rectangle of an image of `imageWidth` × `imageHeight` with the aspect of `width` × `height`
    /// (for a square: the centred square of the shorter side).
    internal static Rectangle CentreCrop(int imageWidth, int imageHeight, int width, int height)
    {
        int cropWidth = imageWidth, cropHeight = imageHeight;
        if ((long)imageWidth * height > (long)imageHeight * width)
            cropWidth = Math.Clamp((int)Math.Round((double)imageHeight * width / height), 1, imageWidth);
        else
            cropHeight = Math.Clamp((int)Math.Round((double)imageWidth * height / width), 1, imageHeight);
        return new Rectangle((imageWidth - cropWidth) / 2, (imageHeight - cropHeight) / 2, cropWidth, cropHeight);
    }

    /// SHA-256 over the used files' names and bytes, in order: identifies the image set in the manifest
    /// without keeping any image.
    public static string SetHash(string root, IEnumerable<string> files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(root, f) + "\n"));
            using var s = File.OpenRead(f);
            var buf = new byte[1 << 16];
            int n;
            while ((n = s.Read(buf)) > 0) sha.AppendData(buf, 0, n);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
