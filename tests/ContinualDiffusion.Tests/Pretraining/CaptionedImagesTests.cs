using ContinualDiffusion.Data;
using ContinualDiffusion.Pretraining;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Pretraining;

public class CaptionedImagesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-captions-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Fashion_mnist_classes_get_readable_prompts_and_an_even_split()
    {
        Assert.True(File.Exists(Path.Combine(FashionMnist.DefaultFolder, "train-images-idx3-ubyte.gz")), "the README's set-up installs dataset-fashion-mnist");
        using var data = CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 1, 8], 6, 32, FashionCaptions.Class);
        Assert.Equal(new long[] { 6, 3, 32, 32 }, data.Pixels.shape);
        Assert.Equal(["a photo of a t-shirt", "a photo of a t-shirt", "a photo of a trouser", "a photo of a trouser", "a photo of a bag", "a photo of a bag"], data.Captions);
        using var again = CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 1, 8], 6, 32, FashionCaptions.Class);
        Assert.Equal(data.Identity, again.Identity);
        using var other = CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 1, 3], 6, 32, FashionCaptions.Class);
        Assert.NotEqual(data.Identity, other.Identity);
        using var coarse = CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 1, 8], 6, 32);
        Assert.NotEqual(data.Identity, coarse.Identity); // same pixels, other captions
    }

    [Fact]
    public void The_default_captions_are_coarse_groups_and_pretraining_stays_out_of_the_concept_pool()
    {
        using var data = CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 2, 4, 6, 5, 7, 9, 1, 3, 8], 10, 32);
        Assert.Equal(["a photo of a top", "a photo of a top", "a photo of a top", "a photo of a top", "a photo of a shoe", "a photo of a shoe",
            "a photo of a shoe", "a photo of a trouser", "a photo of a dress", "a photo of a bag"], data.Captions);
        var e = Assert.Throws<InputException>(() => CaptionedImages.FromFashionMnist(FashionMnist.DefaultFolder, [0, 1], 2 * (FashionProtocol.PretrainPoolPerClass + 1), 32));
        Assert.Contains("--max-images", e.Message);
    }

    [Fact]
    public void A_metadata_folder_loads_images_with_their_captions()
    {
        var dir = TestImages.WriteFolder(_dir, 2, new Rgb24(10, 20, 30));
        File.WriteAllLines(Path.Combine(dir, "metadata.jsonl"),
            ["""{"file_name": "img1.png", "text": "second", "extra": 1}""", """{"file_name": "img0.png", "text": "first"}"""]);
        using var data = CaptionedImages.FromFolder(dir, maxImages: 10, resolution: 16);
        Assert.Equal(new long[] { 2, 3, 16, 16 }, data.Pixels.shape);
        Assert.Equal(["second", "first"], data.Captions);
    }

    [Theory]
    [InlineData("""{"file_name": "img0.png"}""", "missing string key \"text\"")]
    [InlineData("""{"text": "a photo"}""", "missing string key \"file_name\"")]
    [InlineData("""{"file_name": "img0.png", "text": 3}""", "missing string key \"text\"")]
    [InlineData("""{"file_name": "img0.png", "text": "  "}""", "\"text\" is empty")]
    [InlineData("""{"file_name": "img0.png", "text": "a""", "not valid JSON")]
    [InlineData("""["img0.png", "a photo"]""", "expected a JSON object")]
    [InlineData("""{"file_name": "nope.png", "text": "a photo"}""", "'nope.png' not found")]
    public void Bad_metadata_names_the_file_and_line(string badLine, string expected)
    {
        var dir = TestImages.WriteFolder(_dir, 1, new Rgb24(10, 20, 30));
        var metadata = Path.Combine(dir, "metadata.jsonl");
        File.WriteAllLines(metadata, ["""{"file_name": "img0.png", "text": "fine"}""", badLine]);
        var e = Assert.Throws<InputException>(() => CaptionedImages.FromFolder(dir, 10, 32));
        Assert.Contains($"{metadata}:2", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_folder_without_metadata_says_what_is_expected()
    {
        var dir = TestImages.WriteFolder(_dir, 1, new Rgb24(10, 20, 30));
        var e = Assert.Throws<InputException>(() => CaptionedImages.FromFolder(dir, 10, 32));
        Assert.Contains("metadata.jsonl: missing", e.Message);
        Assert.Contains("file_name", e.Message);
    }
}
