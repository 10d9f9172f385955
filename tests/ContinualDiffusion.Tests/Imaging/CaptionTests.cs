using ContinualDiffusion.Imaging;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Imaging;

/// Captions beside the images (`x.png` + `x.txt`), as kohya and OneTrainer read them, for `cdiff train`.
public class CaptionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cap-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Folder()
    {
        TestImages.WriteFolder(_dir, 2, new Rgb24(200, 40, 40));
        return _dir;
    }

    [Fact]
    public void A_caption_beside_an_image_is_read_and_joins_the_set_hash()
    {
        var folder = Folder();
        string plainHash;
        using (var plain = ImageFolder.Load(folder, 32, readCaptions: true))
        {
            Assert.Null(plain.Captions); // no caption: exactly as before captions were read
            using var without = ImageFolder.Load(folder, 32);
            plainHash = without.SetHash;
            Assert.Equal(plainHash, plain.SetHash);
        }

        File.WriteAllText(Path.Combine(folder, "img0.txt"), "a photo of {} on a\r\nbeach\n");
        File.WriteAllText(Path.Combine(folder, "notes.txt"), "a photo of {} somewhere");
        var warnings = new List<string>();
        string captionedHash;
        using (var captioned = ImageFolder.Load(folder, 32, warn: warnings.Add, readCaptions: true))
        {
            Assert.Equal(["a photo of {} on a beach", null], captioned.Captions!.Select(c => c?.Text));
            Assert.Equal(Path.Combine(folder, "img0.txt"), captioned.Captions![0]!.File);
            Assert.Equal(2, captioned.Count);
            Assert.Empty(captioned.Skipped);
            Assert.Contains("notes.txt: ignored (a caption, but no usable image of that name)", Assert.Single(warnings));
            captionedHash = captioned.SetHash;
            Assert.NotEqual(plainHash, captionedHash);
        }

        File.WriteAllText(Path.Combine(folder, "img0.txt"), "a photo of {} on a lake");
        using (var changed = ImageFolder.Load(folder, 32, readCaptions: true))
            Assert.NotEqual(captionedHash, changed.SetHash); // a changed caption is another image set (no --resume across it)

        using var notRead = ImageFolder.Load(folder, 32); // other callers (classification folders) read no captions
        Assert.Null(notRead.Captions);
        Assert.Equal(2, notRead.Skipped.Count); // the .txt files are not images
    }

    /// Captions go by the image's name without extension: x.TXT is x.png's caption too (a .txt image is not read
    /// as an image); two captions for one name, or only captions, are refused.
    [Fact]
    public void Captions_match_by_name_whatever_the_extensions_case_and_ambiguity_is_refused()
    {
        var folder = Folder();
        File.WriteAllText(Path.Combine(folder, "img1.TXT"), "{} upper case");
        using (var images = ImageFolder.Load(folder, 32, readCaptions: true))
            Assert.Equal([null, "{} upper case"], images.Captions!.Select(c => c?.Text));

        File.WriteAllText(Path.Combine(folder, "img1.txt"), "{} lower case");
        var e = Assert.Throws<InputException>(() => ImageFolder.Load(folder, 32, readCaptions: true));
        Assert.Contains("two captions for the images named img1", e.Message);

        var only = Path.Combine(_dir, "only");
        Directory.CreateDirectory(only);
        File.WriteAllText(Path.Combine(only, "a.txt"), "{}");
        Assert.Contains("holds only captions", Assert.Throws<InputException>(() => ImageFolder.Load(only, 32, readCaptions: true)).Message);
    }

    [Theory]
    [InlineData("a photo of a dog", "must contain {} where the new token goes")]
    [InlineData(null, "a caption must be UTF-8 text")]
    [InlineData("", "a caption of more than 65,536 bytes")]
    public void A_bad_caption_is_refused_naming_its_file(string? text, string expected)
    {
        var folder = Folder();
        var path = Path.Combine(folder, "img1.txt");
        if (text is null) File.WriteAllBytes(path, [0x61, 0x20, 0xC3, 0x28, 0x7B, 0x7D]); // invalid UTF-8
        else if (text.Length == 0) File.WriteAllText(path, "{} " + new string('x', 70_000));
        else File.WriteAllText(path, text);
        var e = Assert.Throws<InputException>(() => ImageFolder.Load(folder, 32, readCaptions: true));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
