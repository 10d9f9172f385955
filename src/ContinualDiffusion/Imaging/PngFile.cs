using ContinualDiffusion.Runtime;
using ContinualDiffusion.Checkpoints;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Imaging;

/// PNG output of generated images, with the generation settings in the PNG's text chunks so an image
/// remembers how it was made (prompt, seed, steps, guidance, scheduler, model).
public static class PngFile
{
    /// `image`: (H, W, 3) float in [0, 1]. Converted as diffusers' numpy_to_pil does: round(x · 255) as bytes.
    /// Written atomically.
    public static void Save(Tensor image, string path, IReadOnlyDictionary<string, string>? text = null)
    {
        using var img = ToImage(image);
        var meta = img.Metadata.GetPngMetadata();
        foreach (var (k, v) in text ?? new Dictionary<string, string>())
            meta.TextData.Add(new PngTextData(k, v, "", ""));
        AtomicFile.Write(path, s => img.SaveAsPng(s, new PngEncoder()));
    }

    public static Image<Rgb24> ToImage(Tensor image)
    {
        if (image.dim() != 3 || image.shape[2] != 3) throw new ArgumentException($"expected an (H, W, 3) image, got [{string.Join(", ", image.shape)}]");
        using var scope = torch.NewDisposeScope();
        var bytes = image.detach().cpu().Clamped(0, 1).Times(255).round().to_type(ScalarType.Byte).contiguous();
        int h = (int)image.shape[0], w = (int)image.shape[1];
        return Image.LoadPixelData<Rgb24>(bytes.bytes.ToArray(), w, h);
    }

    /// (H, W, 3) float in [0, 1] and the PNG's text chunks.
    public static (Tensor Image, Dictionary<string, string> Text) Load(string path)
    {
        using var img = Image.Load<Rgb24>(path);
        var pixels = new byte[img.Width * img.Height * 3];
        img.CopyPixelDataTo(pixels);
        Tensor t;
        using (torch.NewDisposeScope())
            t = (torch.tensor(pixels, [img.Height, img.Width, 3]).to_type(ScalarType.Float32).DividedBy(255f)).MoveToOuterDisposeScope();
        var text = img.Metadata.GetPngMetadata().TextData.ToDictionary(d => d.Keyword, d => d.Value);
        return (t, text);
    }
}
