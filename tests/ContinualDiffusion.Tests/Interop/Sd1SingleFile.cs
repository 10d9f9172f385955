using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Tests.Support;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop;

/// tests/fixtures/sd1-single-file: a tiny SD-1.x-like model written as an original-LDM single file by diffusers'
/// scripts/convert_diffusers_to_original_stable_diffusion.py (v0.27.2), its LDM yaml, and reference outputs of the
/// diffusers pipeline it came from (reference.json describes them, including the file's key list and the diffusers
/// configs of the source model). Copied verbatim from ../shared/fixtures/sd1-single-file, as sd-tiny was.
public static class Sd1SingleFile
{
    public static string Dir => Path.Combine(Fixture.Root, "tests", "fixtures", "sd1-single-file");
    public static string Model => Path.Combine(Dir, "model.safetensors");
    public static string OriginalConfig => Path.Combine(Dir, "original_config.yaml");

    private static readonly Lazy<SafeTensorsFile> _reference = new(() => SafeTensorsFile.Open(Path.Combine(Dir, "reference.safetensors")));
    private static readonly Lazy<JsonDocument> _json = new(() => JsonDocument.Parse(PythonJson.QuoteNonFiniteNumbers(File.ReadAllText(Path.Combine(Dir, "reference.json")))));

    /// reference.json (Python's json module writes -Infinity bare: quoted before parsing).
    public static JsonElement ReferenceJson => _json.Value.RootElement;

    /// One reference tensor (a fresh copy: dispose it or read it inside a dispose scope).
    public static Tensor Ref(string name) => _reference.Value.Read(name);

    /// The diffusers config of one component of the source model (reference.json model_configs.{unet,vae,text_encoder}).
    public static JsonElement ModelConfig(string component) => ReferenceJson.GetProperty("model_configs").GetProperty(component);

    /// A copy of the model and its yaml in `dir` (to change without touching the fixture).
    public static (string Model, string OriginalConfig) CopyTo(string dir)
    {
        Directory.CreateDirectory(dir);
        var (model, yaml) = (Path.Combine(dir, "model.safetensors"), Path.Combine(dir, "original_config.yaml"));
        File.Copy(Model, model);
        File.Copy(OriginalConfig, yaml);
        return (model, yaml);
    }

    /// Changes one byte inside the data of the tensor stored last, which lies in the file's last MiB: a model's
    /// identity hash reads the size and the first and last MiB of a weights file (SingleFileCheckpoint and
    /// DiffusersFolder alike), so that is where a change must be for the hash to see it.
    public static void FlipAByteOfTheLastTensor(string path)
    {
        long position;
        using (var file = SafeTensorsFile.Open(path))
        using (var s = File.OpenRead(path))
        {
            var length = new byte[8];
            s.ReadExactly(length);
            long dataStart = 8 + BitConverter.ToInt64(length); // the header's length, u64 little-endian
            var last = file.Tensors.Values.MaxBy(t => t.End)!;
            Assert.True(last.ByteCount > 0, last.Name);
            position = dataStart + last.Begin + last.ByteCount / 2;
        }
        using var w = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        Assert.True(w.Length - position <= 1 << 20, $"{path}: the changed byte lies in the last MiB");
        w.Seek(position, SeekOrigin.Begin);
        int b = w.ReadByte();
        w.Seek(position, SeekOrigin.Begin);
        w.WriteByte((byte)(b ^ 0x5a));
    }
}
