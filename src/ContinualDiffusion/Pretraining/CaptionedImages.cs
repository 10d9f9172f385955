using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ContinualDiffusion.Data;
using ContinualDiffusion.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// How `cdiff pretrain` captions Fashion-MNIST images.
public enum FashionCaptions
{
    /// "a photo of a top" / "shoe" / "trouser" / "dress" / "bag": the fine-grained testbed's base model.
    Coarse,
    /// "a photo of a coat": one caption per class.
    Class,
}

/// Training pairs for a base model: images (N, 3, R, R) in [-1, 1] and one caption each. `Identity` is a
/// SHA-256 of the pixels and captions, so the pretrain fingerprint changes exactly when the data does.
public sealed class CaptionedImages : IDisposable
{
    public const string MetadataFileName = "metadata.jsonl";

    /// Readable Fashion-MNIST class names for prompts ("a photo of a t-shirt"), indexed by label.
    public static readonly string[] FashionPromptNames =
        ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];

    public static string FashionPrompt(int label) => $"a photo of a {FashionPromptNames[label]}";

    /// A Fashion-MNIST image's caption: its coarse group ("a photo of a top", the testbed's default, see
    /// FashionProtocol) or its own class ("a photo of a coat").
    public static string FashionCaption(int label, FashionCaptions captions) =>
        captions == FashionCaptions.Coarse ? FashionProtocol.CoarsePrompt(label) : FashionPrompt(label);

    public Tensor Pixels { get; }
    public IReadOnlyList<string> Captions { get; }
    public string Identity { get; }
    public int Count => Captions.Count;

    private CaptionedImages(Tensor pixels, IReadOnlyList<string> captions)
    {
        Pixels = pixels;
        Captions = captions;
        Identity = ComputeIdentity(pixels, captions);
    }

    /// The first `maxImages / classes` training images of each class (only from FashionProtocol's pretraining pool,
    /// so concept images stay unseen), captioned coarsely ("a photo of a top") or by class ("a photo of a coat").
    public static CaptionedImages FromFashionMnist(string folder, IReadOnlyList<int> classes, int maxImages, int resolution,
        FashionCaptions captionStyle = FashionCaptions.Coarse)
    {
        var split = FashionMnist.LoadTrain(folder);
        int perClass = Math.Max(1, maxImages / classes.Count);
        if (perClass > FashionProtocol.PretrainPoolPerClass)
            throw new InputException($"--max-images: {maxImages} gives {perClass} images per class; at most {FashionProtocol.PretrainPoolPerClass} per class may be used for pretraining (the rest are the concepts' unseen images)");
        var indices = new List<int>();
        var captions = new List<string>();
        foreach (int label in classes)
        {
            var chosen = FashionProtocol.PretrainPool(split, label).Take(perClass).ToList();
            indices.AddRange(chosen);
            captions.AddRange(chosen.Select(_ => FashionCaption(label, captionStyle)));
        }
        var pixels = FashionImages.ToTensor(split, indices, channels: 3);
        return new CaptionedImages(Resize(pixels, resolution), captions);
    }

    /// A Hugging Face imagefolder: images plus metadata.jsonl with one `{"file_name": ..., "text": ...}` per line.
    /// Every problem is an InputException naming metadata.jsonl and the line.
    public static CaptionedImages FromFolder(string folder, int maxImages, int resolution)
    {
        var root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new InputException($"--images {root}: folder not found");
        var metadata = Path.Combine(root, MetadataFileName);
        if (!File.Exists(metadata))
            throw new InputException($"{metadata}: missing (expected one JSON object per line: {{\"file_name\": \"a.png\", \"text\": \"a photo of ...\"}})");
        var images = new List<Tensor>();
        var captions = new List<string>();
        try
        {
            int lineNumber = 0;
            foreach (var line in File.ReadLines(metadata))
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                if (images.Count == maxImages) break;
                var (file, text) = ParseLine(line, $"{metadata}:{lineNumber}");
                var path = Path.GetFullPath(Path.Combine(root, file));
                if (!File.Exists(path)) throw new InputException($"{metadata}:{lineNumber}: file_name '{file}' not found ({path})");
                var image = ImageFolder.TryLoadOne(path, resolution, ImageFolder.DefaultMaxPixels, out var problem)
                    ?? throw new InputException($"{metadata}:{lineNumber}: {file}: {problem}");
                images.Add(image);
                captions.Add(text);
            }
            if (images.Count == 0) throw new InputException($"{metadata}: no entries (expected one JSON object per line)");
            return new CaptionedImages(torch.stack(images), captions);
        }
        finally
        {
            foreach (var t in images) t.Dispose();
        }
    }

    /// One metadata line → (file_name, text); `where` is "path:line" for messages.
    internal static (string File, string Text) ParseLine(string line, string where)
    {
        JsonElement obj;
        try { obj = JsonDocument.Parse(line).RootElement; }
        catch (JsonException e) { throw new InputException($"{where}: not valid JSON ({e.Message})"); }
        if (obj.ValueKind != JsonValueKind.Object) throw new InputException($"{where}: expected a JSON object with \"file_name\" and \"text\"");
        string Field(string key) =>
            obj.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new InputException($"{where}: missing string key \"{key}\"");
        var file = Field("file_name");
        var text = Field("text");
        if (string.IsNullOrWhiteSpace(file)) throw new InputException($"{where}: \"file_name\" is empty");
        if (string.IsNullOrWhiteSpace(text)) throw new InputException($"{where}: \"text\" is empty (every image needs a caption)");
        return (file, text);
    }

    private static Tensor Resize(Tensor pixels, int resolution)
    {
        if (pixels.shape[2] == resolution) return pixels;
        using (pixels)
            return nn.functional.interpolate(pixels, [resolution, resolution], mode: InterpolationMode.Bilinear, align_corners: false);
    }

    private static string ComputeIdentity(Tensor pixels, IReadOnlyList<string> captions)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"{string.Join(",", pixels.shape)}\n"));
        using (torch.NewDisposeScope())
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(pixels.cpu().contiguous().data<float>().ToArray().AsSpan()));
        foreach (var c in captions) sha.AppendData(Encoding.UTF8.GetBytes(c + "\n"));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public void Dispose() => Pixels.Dispose();
}
