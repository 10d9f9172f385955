using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Checkpoints that do not fit the architecture fail loudly, naming the key.
public class StrictLoadingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-unet-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";

    private string EditedCheckpoint(Action<Dictionary<string, Tensor>> edit)
    {
        var tensors = SafeTensorsFile.Load(TinyModels.UNetWeights);
        edit(tensors);
        var path = Path.Combine(_dir, "edited.safetensors");
        SafeTensorsFile.Save(path, tensors);
        foreach (var t in tensors.Values) t.Dispose();
        return path;
    }

    private static CheckpointMismatchException LoadFails(string path)
    {
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(TinyModels.UNetDir, "config.json")));
        return Assert.Throws<CheckpointMismatchException>(() => StateDictLoader.LoadStrict(unet, path));
    }

    [Fact]
    public void Unedited_fixture_loads()
    {
        var path = EditedCheckpoint(_ => { });
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(TinyModels.UNetDir, "config.json")));
        StateDictLoader.LoadStrict(unet, path);
    }

    [Fact]
    public void A_missing_key_is_reported_by_name()
    {
        var e = LoadFails(EditedCheckpoint(t => t.Remove(Key)));
        Assert.Contains("missing", e.Message);
        Assert.Contains(Key, e.Message);
    }

    [Fact]
    public void An_extra_key_is_reported_by_name()
    {
        const string extra = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_down.weight";
        var e = LoadFails(EditedCheckpoint(t => t[extra] = torch.zeros(4, 64)));
        Assert.Contains("unexpected", e.Message);
        Assert.Contains(extra, e.Message);
    }

    [Fact]
    public void A_wrongly_shaped_tensor_is_reported_by_name_and_shapes()
    {
        // A cross-attention projection sized for a 768-wide text encoder instead of the tiny 32-wide one.
        var e = LoadFails(EditedCheckpoint(t => t[Key] = torch.zeros(64, 768)));
        Assert.Contains(Key, e.Message);
        Assert.Contains("[64, 768]", e.Message);
        Assert.Contains("[64, 32]", e.Message);
    }
}
