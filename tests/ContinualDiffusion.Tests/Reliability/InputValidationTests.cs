using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using TorchSharp;

namespace ContinualDiffusion.Tests.Reliability;

/// The refusals `scripts/bench.sh robustness` found missing, pinned down one by one (the bench fuzzes them at scale).
public class InputValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-input-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string ValidRun()
    {
        var run = new RunDirectory(Path.Combine(_dir, "run"));
        Directory.CreateDirectory(run.AdaptersDir);
        File.WriteAllBytes(run.AdapterPath(1), [1, 2, 3]);
        var entry = new TaskEntry
        {
            Task = 1, Token = "<v1>", TokenId = 49408, AdapterFile = Path.GetRelativePath(run.Root, run.AdapterPath(1)),
            AdapterSha256 = RunDirectory.Sha256File(run.AdapterPath(1)), AdapterBytes = 3, ImageSetHash = "abc", ImageCount = 3,
            Method = "clora", Rank = 4, Lambda = 1, Steps = 10, LearningRate = 1e-4, Seed = 0, FinalLoss = 0.1, WallTimeSeconds = 1,
            FinishedUtc = DateTimeOffset.UnixEpoch,
        };
        run.WriteManifest(new RunManifest { BaseModel = new BaseModelInfo("/m", "h"), Method = "clora", Tasks = [entry] });
        return run.Root;
    }

    [Theory]
    [InlineData("duplicate task", "numbered 1..2")]
    [InlineData("adapter outside the run", "inside the run directory")]
    [InlineData("wrong token", "expected '<v1>'")]
    [InlineData("no tasks key", "not a valid cdiff manifest")]
    [InlineData("null task", "list of task entries")]
    public void A_damaged_manifest_is_refused_naming_it(string damage, string expected)
    {
        var root = ValidRun();
        var path = Path.Combine(root, RunDirectory.ManifestName);
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var tasks = o["tasks"]!.AsArray();
        switch (damage)
        {
            case "duplicate task": tasks.Add(tasks[0]!.DeepClone()); break;
            case "adapter outside the run": tasks[0]!["adapter_file"] = "../elsewhere.safetensors"; break;
            case "wrong token": tasks[0]!["token"] = "<v7>"; break;
            case "no tasks key": o.Remove("tasks"); break;
            case "null task": tasks.Add(null); break;
        }
        File.WriteAllText(path, o.ToJsonString());
        var e = Assert.ThrowsAny<InputException>(() => new RunDirectory(root).ReadManifest());
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Pickles_are_refused_with_the_reason_and_a_safetensors_header_that_starts_like_one_is_not()
    {
        var zip = Path.Combine(_dir, "model.safetensors");
        File.WriteAllBytes(zip, [(byte)'P', (byte)'K', 3, 4, .. new byte[40]]);
        var e = Assert.ThrowsAny<InputException>(() => SafeTensorsFile.Open(zip));
        Assert.Contains("arbitrary code", e.Message);

        // A header of 640 bytes: the file starts 0x80 0x02, like a protocol-2 pickle, and must still load.
        var json = "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        var path = WriteWithHeader(Encoding.UTF8.GetBytes(json.PadRight(640)));
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0x80, bytes[0]);
        Assert.Equal(0x02, bytes[1]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Single(f.Tensors);
    }

    [Fact]
    public void Duplicate_keys_and_non_utf8_headers_are_format_errors()
    {
        var entry = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
        var duplicate = WriteWithHeader(Encoding.UTF8.GetBytes($"{{\"t\":{entry},\"t\":{entry}}}"));
        Assert.Contains("appears twice", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(duplicate)).Message);
        var nonUtf8 = WriteWithHeader([.. Encoding.UTF8.GetBytes("{\"t"), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes($"\":{entry}}}")]);
        Assert.Contains("UTF-8", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(nonUtf8)).Message);
    }

    /// A safetensors file with the given header bytes and 4 data bytes.
    private string WriteWithHeader(byte[] header)
    {
        var path = Path.Combine(_dir, Guid.NewGuid() + ".safetensors");
        var bytes = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void A_checksummed_file_with_one_flipped_data_byte_is_refused()
    {
        var path = Path.Combine(_dir, "state.safetensors");
        SafeTensorsFile.Save(path, new Dictionary<string, torch.Tensor> { ["a"] = OwnedScalars.Arange(0.0, 6.0, 1.0), ["b"] = torch.ones(3) }, checksum: true);
        using (var ok = SafeTensorsFile.Open(path)) ok.VerifyChecksum();
        var bytes = File.ReadAllBytes(path);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        using var damaged = SafeTensorsFile.Open(path);
        Assert.Contains("damaged", Assert.Throws<SafeTensorsFormatException>(damaged.VerifyChecksum).Message);
    }
}
