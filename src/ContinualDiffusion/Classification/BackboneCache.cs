using System.Security.Cryptography;
using System.Text;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Data;

namespace ContinualDiffusion.Classification;

/// The pretrained ViT the classification commands use by default: the one that ships with cdiff
/// (models/vit-fashion.safetensors, copied next to the binaries), or else one trained once per machine on
/// Fashion-MNIST's train split (60,000 images; the continual classes are MNIST digits, so disjoint) and cached under
/// `$CDIFF_CACHE/classify/`, named by a fingerprint of its config and pretraining options, so a change retrains.
public static class BackboneCache
{
    /// The shipped backbone next to the binaries (made by `cdiff classify pretrain` with its defaults; models/README.md).
    public static string ShippedPath => Path.Combine(AppContext.BaseDirectory, "models", "vit-fashion.safetensors");

    /// The shipped backbone when it is there, else the cached one for the default config and options (pretrained first
    /// if missing).
    public static string Default(Action<string>? info = null, Action<int, int, double>? progress = null) =>
        File.Exists(ShippedPath) ? ShippedPath : Ensure(VitConfig.Load(DefaultConfigPath), new VitPretraining.Options(), info, progress).Path;

    /// configs/models/vit-fashion.json next to the binaries.
    public static string DefaultConfigPath => Path.Combine(AppContext.BaseDirectory, "configs", "models", "vit-fashion.json");

    public static string PathFor(VitConfig config, VitPretraining.Options options, string dataset = "fashion")
    {
        var fingerprint = JsonConfig.Serialize(config) + JsonConfig.Serialize(options with { Seed = options.Seed });
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(fingerprint)))[..12];
        return Path.Combine(Benchmarking.ClassifierCache.CacheDir, "classify", $"vit-{dataset}-{hash}.safetensors");
    }

    /// The cached backbone for `config` and `options`, pretraining it first if it is not there. Returns its path
    /// and test accuracy.
    public static (string Path, double TestAccuracy) Ensure(VitConfig config, VitPretraining.Options options, Action<string>? info = null,
        Action<int, int, double>? progress = null)
    {
        var path = PathFor(config, options);
        if (File.Exists(path)) return (path, VitCheckpoint.ReadInfo(path).TestAccuracy);
        info?.Invoke($"pretraining the ViT backbone on Fashion-MNIST ({options.Epochs} epochs; cached at {path})");
        return (path, Pretrain(path, config, options, info, progress).TestAccuracy);
    }

    /// Pretrains a backbone on `dataset` (Fashion-MNIST by default, see <see cref="ClassifyDatasets"/>) and writes it
    /// to `path` (atomically).
    public static VitPretraining.Result Pretrain(string path, VitConfig config, VitPretraining.Options options, Action<string>? info = null,
        Action<int, int, double>? progress = null, CancellationToken cancel = default, string dataset = "fashion", string? mnistTarball = null)
    {
        var (train, test, description) = ClassifyDatasets.Pretraining(dataset, mnistTarball, info);
        using var g = new TorchSharp.torch.Generator(unchecked((ulong)options.Seed + 1));
        TorchSharp.torch.manual_seed(options.Seed).Dispose(); // the layers' default initialisers draw from the global generator
        using var model = VisionTransformer.Create(config, train.ClassNames.Count, g);
        var result = VitPretraining.Train(model, train, test, options, progress, cancel);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        VitCheckpoint.Save(path, model, train.ClassNames, description, result.TestAccuracy);
        info?.Invoke($"ViT backbone: test accuracy {result.TestAccuracy:P1} on {ClassifyDatasets.Title(dataset)} after {result.Steps} steps ({result.Seconds / 60:F1} min): {path}");
        return result;
    }
}
