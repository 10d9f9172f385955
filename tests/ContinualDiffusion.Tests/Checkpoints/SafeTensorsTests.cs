using System.Buffers.Binary;
using System.Text;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Checkpoints;

public class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Reads_the_reference_file_written_by_python()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixture.SdTiny, "reference.safetensors"));
        Assert.Equal("pt", f.Metadata["format"]);
        using var ids = f.Read("tokenizer.input_ids");
        Assert.Equal(new long[] { 7, 77 }, ids.shape);
        Assert.Equal(49406L, ids[0, 0].item<long>());
        using var acp = f.Read("train.alphas_cumprod");
        Assert.InRange(acp[0].item<float>(), 0.99914f, 0.99916f);
    }

    [Fact]
    public void Round_trip_keeps_names_dtypes_values_and_metadata()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(_dir, "a.safetensors");
        var tensors = new Dictionary<string, Tensor>
        {
            ["w"] = torch.randn(3, 5),
            ["ids"] = OwnedScalars.Arange(0, 7, ScalarType.Int64),
            ["h"] = torch.randn(2, 2).to_type(ScalarType.Float16),
            ["scalar"] = torch.tensor(2.5f),
        };
        SafeTensorsFile.Save(path, tensors, new Dictionary<string, string> { ["task"] = "3" });
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal("3", f.Metadata["task"]);
        Assert.True(f.Read("w").equal(tensors["w"]).all().item<bool>());
        Assert.True(f.Read("ids").equal(tensors["ids"]).all().item<bool>());
        Assert.Equal(ScalarType.Float32, f.Read("h").dtype); // upcast on read
        Assert.Equal(ScalarType.Float16, f.Read("h", keepDType: true).dtype);
        Assert.Equal(2.5f, f.Read("scalar").item<float>());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void Saving_over_a_longer_file_truncates_it()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(_dir, "b.safetensors");
        File.WriteAllBytes(path, new byte[100_000]);
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor> { ["x"] = torch.ones(2) });
        Assert.True(new FileInfo(path).Length < 1000);
        Assert.Equal(2f, SafeTensorsFile.Load(path)["x"].sum().item<float>());
    }

    private string WriteRaw(string header, int dataBytes, long? declaredLength = null)
    {
        var path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".safetensors");
        var h = Encoding.UTF8.GetBytes(header);
        var buf = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(buf, (ulong)(declaredLength ?? h.Length));
        h.CopyTo(buf, 8);
        File.WriteAllBytes(path, buf);
        return path;
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside the file")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 16, "needs 16")]
    [InlineData("{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "unsupported dtype")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlaps")]
    [InlineData("{not json", 0, "not valid JSON")]
    [InlineData("{\"a\":{\"shape\":[4]}}", 16, "needs dtype")]
    public void Malformed_files_are_refused_with_the_reason(string header, int dataBytes, string expected)
    {
        var path = WriteRaw(header, dataBytes);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_header_length_past_the_end_is_refused()
    {
        var path = WriteRaw("{}", 0, declaredLength: 1_000_000);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("does not fit", e.Message);
    }

    [Fact]
    public void A_truncated_copy_of_a_real_checkpoint_is_refused()
    {
        var src = Path.Combine(Fixture.SdTiny, "vae", "diffusion_pytorch_model.safetensors");
        var bytes = File.ReadAllBytes(src);
        var path = Path.Combine(_dir, "truncated.safetensors");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path));
    }
}
