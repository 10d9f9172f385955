using System.Globalization;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// A pretrained ViT as one safetensors file: the model's state dict under timm's names, and in the metadata its
/// config (`vit_config`, the JSON of <see cref="VitConfig"/>), the pretraining classes (`classes`, a JSON list),
/// the dataset it was trained on (`dataset`) and its test accuracy there (`test_accuracy`).
public static class VitCheckpoint
{
    public sealed record Info(VitConfig Config, IReadOnlyList<string> Classes, string Dataset, double TestAccuracy);

    public static void Save(string path, VisionTransformer model, IReadOnlyList<string> classes, string dataset, double testAccuracy)
    {
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "cdiff-vit",
            ["vit_config"] = JsonConfig.Serialize(model.Config),
            ["classes"] = JsonSerializer.Serialize(classes),
            ["dataset"] = dataset,
            ["test_accuracy"] = testAccuracy.ToString("R", CultureInfo.InvariantCulture),
        };
        using var scope = torch.NewDisposeScope();
        var tensors = model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().cpu().contiguous(), StringComparer.Ordinal);
        SafeTensorsFile.Save(path, tensors, metadata);
    }

    public static Info ReadInfo(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return ParseInfo(file.Metadata, path);
    }

    /// The model in `path` (strict: every key present with its shape, every value finite), and what its metadata says.
    public static (VisionTransformer Model, Info Info) Load(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        var info = ParseInfo(file.Metadata, path);
        var model = VisionTransformer.Create(info.Config, info.Classes.Count);
        try
        {
            StateDictLoader.LoadStrict(model, file);
            // A NaN or infinity in a weight (a damaged file that still parses) would only show as a diverged task.
            using var scope = TorchSharp.torch.NewDisposeScope();
            foreach (var (name, p) in model.named_parameters())
                if (!p.isfinite().all().item<bool>()) throw new InputException($"{path}: tensor '{name}' holds NaN or infinite values");
            // Finite but absurd values (a flipped exponent bit) overflow in the forward instead: probe it once.
            using (TorchSharp.torch.no_grad())
            {
                var c = info.Config;
                var probe = model.Features(TorchSharp.torch.ones(1, c.InChannels, c.ImageSize, c.ImageSize)); // every pixel lit: every weight counts
                if (!probe.isfinite().all().item<bool>())
                    throw new InputException($"{path}: the backbone's features come out NaN or infinite on a white image (damaged weights?)");
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return (model, info);
    }

    private static Info ParseInfo(IReadOnlyDictionary<string, string> metadata, string path)
    {
        string Get(string key) => metadata.TryGetValue(key, out var v) ? v
            : throw new InputException($"{path}: metadata key '{key}' is missing (not a ViT written by `cdiff classify pretrain`)");
        if (Get("format") != "cdiff-vit") throw new InputException($"{path}: metadata 'format' is '{metadata["format"]}', expected 'cdiff-vit'");
        var config = JsonConfig.Parse<VitConfig>(Get("vit_config"), $"{path}: metadata 'vit_config'");
        config.Validate($"{path}: metadata 'vit_config'");
        List<string>? classes;
        try { classes = JsonSerializer.Deserialize<List<string>>(Get("classes")); }
        catch (JsonException e) { throw new InputException($"{path}: metadata 'classes' is not a JSON list of names ({e.Message})"); }
        if (classes is not { Count: > 0 }) throw new InputException($"{path}: metadata 'classes' is empty");
        if (!double.TryParse(Get("test_accuracy"), NumberStyles.Float, CultureInfo.InvariantCulture, out double accuracy))
            throw new InputException($"{path}: metadata 'test_accuracy' is not a number");
        return new Info(config, classes, Get("dataset"), accuracy);
    }
}
