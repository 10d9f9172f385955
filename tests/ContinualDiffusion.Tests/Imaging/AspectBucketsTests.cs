using ContinualDiffusion.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;

namespace ContinualDiffusion.Tests.Imaging;

/// Aspect buckets against kohya-ss sd-scripts: the expected sizes and choices are what its
/// `make_bucket_resolutions(max_reso, min_size, max_size, divisible)` and `select_bucket` give in Python (run by hand,
/// copied here).
public class AspectBucketsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-buckets-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Sizes_are_kohyas_at_512_and_768_and_a_tiny_resolution()
    {
        Assert.Equal([(256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576), (512, 512),
                      (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256)],
            new AspectBuckets(512, 64).Sizes);
        Assert.Equal([(384, 1344), (384, 1408), (384, 1472), (384, 1536), (448, 1216), (448, 1280), (512, 1088), (512, 1152), (576, 960),
                      (576, 1024), (640, 896), (704, 832), (768, 768), (832, 704), (896, 640), (960, 576), (1024, 576), (1088, 512),
                      (1152, 512), (1216, 448), (1280, 448), (1344, 384), (1408, 384), (1472, 384), (1536, 384)],
            new AspectBuckets(768, 64).Sizes);
        Assert.Equal([(16, 48), (16, 56), (16, 64), (24, 40), (32, 32), (40, 24), (48, 16), (56, 16), (64, 16)], new AspectBuckets(32, 8).Sizes);
        var b = new AspectBuckets(512, 64);
        Assert.Equal((256, 1024), (b.MinSide, b.MaxSide)); // kohya's defaults at 512
    }

    [Theory]
    [InlineData(768, 512, 640, 384)]
    [InlineData(512, 768, 384, 640)]
    [InlineData(1000, 1000, 512, 512)]
    [InlineData(4000, 1000, 1024, 256)]
    [InlineData(1000, 4000, 256, 1024)]
    [InlineData(640, 480, 576, 448)]
    [InlineData(333, 500, 384, 640)]
    public void An_image_goes_to_kohyas_bucket(int width, int height, int bucketWidth, int bucketHeight) =>
        Assert.Equal((bucketWidth, bucketHeight), new AspectBuckets(512, 64).For(width, height));

    [Theory]
    [InlineData(64, 32, 8, 8, 16, 0, 32, 32)]   // wider: the centred square of the height
    [InlineData(20, 40, 8, 8, 0, 10, 20, 20)]   // taller
    [InlineData(100, 100, 40, 24, 0, 20, 100, 60)] // a landscape bucket from a square
    [InlineData(100, 50, 24, 40, 35, 0, 30, 50)]   // a portrait bucket from a landscape
    [InlineData(1, 4000, 16, 64, 0, 1998, 1, 4)]   // a one-pixel-wide sliver: still a crop of at least one pixel
    [InlineData(4000, 1, 64, 16, 1998, 0, 4, 1)]
    public void The_crop_is_the_largest_centred_rectangle_of_the_buckets_aspect(int w, int h, int bw, int bh, int x, int y, int cw, int ch) =>
        Assert.Equal(new Rectangle(x, y, cw, ch), ImageFolder.CentreCrop(w, h, bw, bh));

    /// Each image goes to its bucket, keeps its left and right, and a folder of squares loads exactly as without buckets.
    [Fact]
    public void A_folder_loads_into_one_group_per_bucket_keeping_the_images_orientation()
    {
        var wide = new Image<Rgb24>(80, 40, new Rgb24(255, 0, 0));
        for (int y = 0; y < 40; y++) for (int x = 40; x < 80; x++) wide[x, y] = new Rgb24(0, 0, 255); // left red, right blue
        wide.SaveAsPng(Path.Combine(_dir, "a-wide.png"));
        wide.Dispose();
        using (var tall = new Image<Rgb24>(40, 80, new Rgb24(0, 255, 0))) tall.SaveAsPng(Path.Combine(_dir, "b-tall.png"));
        using (var square = new Image<Rgb24>(50, 50, new Rgb24(9, 99, 199))) square.SaveAsPng(Path.Combine(_dir, "c-square.png"));
        using (var wide2 = new Image<Rgb24>(90, 50, new Rgb24(200, 200, 0))) wide2.SaveAsPng(Path.Combine(_dir, "d-wide.png"));

        using var scope = torch.NewDisposeScope();
        using var set = ImageFolder.Load(_dir, 32, buckets: new AspectBuckets(32, 8));
        Assert.Equal(4, set.Count);
        Assert.Equal(["24x40: 1", "32x32: 2", "40x24: 0 3"], set.Groups.Select(g => $"{g.Width}x{g.Height}: {string.Join(' ', g.Indices)}"));
        var landscape = set.Groups[2].Pixels;
        Assert.Equal(new long[] { 2, 3, 24, 40 }, landscape.shape);
        Assert.True(landscape[0, 0, .., ..10].mean().item<float>() > 0.9f, "left is red");
        Assert.True(landscape[0, 2, .., 30..].mean().item<float>() > 0.9f, "right is blue");
        Assert.Throws<InvalidOperationException>(() => set.Pixels);

        foreach (var f in new[] { "a-wide.png", "b-tall.png", "d-wide.png" }) File.Delete(Path.Combine(_dir, f));
        using var squares = ImageFolder.Load(_dir, 32, buckets: new AspectBuckets(32, 8));
        using var plain = ImageFolder.Load(_dir, 32);
        Support.Fixture.AssertIdentical(squares.Pixels, plain.Pixels, "squares with and without buckets");
    }
}
