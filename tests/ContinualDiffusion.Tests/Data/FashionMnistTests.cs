using ContinualDiffusion.Data;
using TorchSharp;

namespace ContinualDiffusion.Tests.Data;

public class FashionMnistTests
{
    private static bool Installed => File.Exists(Path.Combine(FashionMnist.DefaultFolder, "t10k-images-idx3-ubyte.gz"));

    [Fact]
    public void Parses_an_idx_payload_and_checks_its_size()
    {
        byte[] payload = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 7, 8, 9, 10];
        var body = FashionMnist.ParseIdx(payload, "x.idx", 3, out var dims);
        Assert.Equal(new[] { 2, 1, 2 }, dims);
        Assert.Equal(new byte[] { 7, 8, 9, 10 }, body);
        Assert.Throws<InputException>(() => FashionMnist.ParseIdx(payload[..^1], "x.idx", 3, out _));
        Assert.Throws<InputException>(() => FashionMnist.ParseIdx(payload, "x.idx", 1, out _));
    }

    [Fact]
    public void Missing_data_names_the_debian_package()
    {
        var e = Assert.Throws<InputException>(() => FashionMnist.LoadTest(Path.Combine(Path.GetTempPath(), "no-such-folder")));
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
    }

    [Fact]
    public void The_installed_test_split_has_10000_images_1000_per_class()
    {
        Assert.True(Installed, "the README's set-up installs dataset-fashion-mnist");
        var test = FashionMnist.LoadTest();
        Assert.Equal(10_000, test.Count);
        for (int c = 0; c < 10; c++) Assert.Equal(1000, test.IndicesOf(c).Count());
    }

    [Fact]
    public void Images_are_padded_to_32_and_scaled_to_minus_one_one()
    {
        var test = FashionMnist.LoadTest();
        using var x = FashionImages.ToTensor(test, [0, 1], channels: 3);
        Assert.Equal(new long[] { 2, 3, 32, 32 }, x.shape);
        Assert.Equal(-1f, x.min().item<float>());
        Assert.True(x.max().item<float>() <= 1f && x.max().item<float>() > 0.5f);
        Assert.Equal(-1f, x[0, 0, 0, 0].item<float>()); // the padding is background
    }
}
