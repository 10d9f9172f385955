using ContinualDiffusion.Imaging;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Data;

/// A user's labelled images for classification: one sub-folder per class, named after the class, holding that
/// class's images (any format ImageFolder reads). Each image is centre-cropped, resized to side × side and turned
/// to grey (the mean of R, G and B), as the 28×28 single-channel backbones expect.
public static class ClassFolders
{
    /// The images of every class folder under `root`. `knownClasses` are the run's class names so far: a folder
    /// with one of those names keeps its label, any other name becomes a new label after them (in sorted order).
    /// Returns the images and the full class list (known ones first).
    public static LabeledImages Load(string root, int side, IReadOnlyList<string> knownClasses, Action<string>? warn = null)
    {
        var full = Path.GetFullPath(root);
        if (!Directory.Exists(full)) throw new InputException($"--images {full}: folder not found");
        var folders = Directory.EnumerateDirectories(full).Where(d => !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.Ordinal).ToList();
        if (folders.Count == 0)
            throw new InputException($"--images {full}: has no class sub-folders (expected one folder per class, named after it, holding its images)");
        var classes = knownClasses.ToList();
        var items = new List<(byte[] Pixels, int Label)>();
        foreach (var folder in folders)
        {
            var name = Path.GetFileName(folder);
            int label = classes.IndexOf(name);
            if (label < 0) { classes.Add(name); label = classes.Count - 1; }
            using var images = ImageFolder.Load(folder, side, warn: warn);
            using var scope = torch.NewDisposeScope();
            // [N, 3, side, side] in [−1, 1] → grey bytes [N, side, side]
            var grey = images.Pixels.mean([1]).Plus(1.0).Times(127.5).round().Clamped(0, 255).to(ScalarType.Byte).contiguous();
            var bytes = grey.data<byte>().ToArray();
            for (int i = 0; i < images.Count; i++) items.Add((bytes[(i * side * side)..((i + 1) * side * side)], label));
        }
        return LabeledImages.From(items, classes, side);
    }
}
