using ContinualDiffusion.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;

namespace ContinualDiffusion.Tests.Imaging;

public class ImageFolderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-img-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Save(string name, Image image, Action<Image, string> save)
    {
        var path = Path.Combine(_dir, name);
        save(image, path);
        image.Dispose();
        return path;
    }

    [Fact]
    public void Reads_png_jpeg_bmp_webp_skips_the_rest_and_crops_to_a_square()
    {
        Save("a.png", new Image<Rgb24>(64, 32, new Rgb24(255, 0, 0)), (i, p) => i.SaveAsPng(p));
        Save("b.jpg", new Image<Rgb24>(20, 40, new Rgb24(0, 255, 0)), (i, p) => i.SaveAsJpeg(p));
        Save("c.bmp", new Image<Rgb24>(16, 16, new Rgb24(0, 0, 255)), (i, p) => i.SaveAsBmp(p));
        Save("d.webp", new Image<Rgb24>(16, 16, new Rgb24(255, 255, 255)), (i, p) => i.SaveAsWebp(p));
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "not an image");
        var png = File.ReadAllBytes(Path.Combine(_dir, "a.png"));
        File.WriteAllBytes(Path.Combine(_dir, "e-truncated.png"), png[..40]);
        var warnings = new List<string>();
        using var set = ImageFolder.Load(_dir, 8, warn: warnings.Add);
        Assert.Equal(4, set.Count);
        Assert.Equal(new long[] { 4, 3, 8, 8 }, set.Pixels.shape);
        Assert.Equal(2, warnings.Count);
        Assert.Contains(warnings, w => w.Contains("notes.txt"));
        Assert.Contains(warnings, w => w.Contains("e-truncated.png"));
        Assert.InRange(set.Pixels[0, 0].mean().item<float>(), 0.95f, 1f);      // red channel of a.png
        Assert.InRange(set.Pixels[0, 1].mean().item<float>(), -1f, -0.95f);
    }

    [Fact]
    public void Exif_orientation_is_applied()
    {
        // 40 wide x 20 high, left half black, right half white; orientation 6 = rotate 90° clockwise to display.
        var img = new Image<Rgb24>(40, 20, new Rgb24(0, 0, 0));
        for (int y = 0; y < 20; y++) for (int x = 20; x < 40; x++) img[x, y] = new Rgb24(255, 255, 255);
        img.Metadata.ExifProfile = new ExifProfile();
        img.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        Save("rotated.jpg", img, (i, p) => i.SaveAsJpeg(p));
        using var set = ImageFolder.Load(_dir, 20);
        // Displayed upright it is 20 wide x 40 high with white on the bottom; the centre square straddles both.
        var top = set.Pixels[0, 0, 2].mean().item<float>();
        var bottom = set.Pixels[0, 0, 17].mean().item<float>();
        Assert.True(top < -0.5f && bottom > 0.5f, $"top {top}, bottom {bottom}");
    }

    [Fact]
    public void Images_over_the_pixel_limit_are_refused_before_decoding()
    {
        Save("big.png", new Image<Rgb24>(300, 300), (i, p) => i.SaveAsPng(p));
        var e = Assert.Throws<InputException>(() => ImageFolder.Load(_dir, 8, maxPixels: 50_000));
        Assert.Contains("big.png", e.Message);
        Assert.Contains("over the limit", e.Message);
    }

    [Fact]
    public void Missing_empty_or_unusable_folders_are_errors_naming_the_folder()
    {
        Assert.Contains("not found", Assert.Throws<InputException>(() => ImageFolder.Load(Path.Combine(_dir, "nope"), 8)).Message);
        Assert.Contains("empty", Assert.Throws<InputException>(() => ImageFolder.Load(_dir, 8)).Message);
        File.WriteAllText(Path.Combine(_dir, "x.png"), "not really a png");
        Assert.Contains("none of the 1 file(s)", Assert.Throws<InputException>(() => ImageFolder.Load(_dir, 8)).Message);
    }

    [Fact]
    public void Set_hash_changes_with_content()
    {
        Save("a.png", new Image<Rgb24>(8, 8, new Rgb24(1, 2, 3)), (i, p) => i.SaveAsPng(p));
        string h1;
        using (var s = ImageFolder.Load(_dir, 8)) h1 = s.SetHash;
        Save("a.png", new Image<Rgb24>(8, 8, new Rgb24(1, 2, 4)), (i, p) => i.SaveAsPng(p));
        using var s2 = ImageFolder.Load(_dir, 8);
        Assert.NotEqual(h1, s2.SetHash);
    }

    [Fact]
    public void Png_round_trip_keeps_pixels_and_text_metadata()
    {
        using var scope = torch.NewDisposeScope();
        var image = torch.rand(6, 5, 3);
        var path = Path.Combine(_dir, "out.png");
        PngFile.Save(image, path, new Dictionary<string, string> { ["prompt"] = "a photo of <v1>", ["seed"] = "42" });
        var (back, text) = PngFile.Load(path);
        Assert.True(((back - image).abs().max().item<float>()) <= 0.5f / 255 + 1e-6f);
        Assert.Equal("a photo of <v1>", text["prompt"]);
        Assert.Equal("42", text["seed"]);
    }
}
