using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;

namespace ContinualDiffusion.Pretraining;

/// The architecture a base model is trained from: one JSON file with the diffusers `unet`, `vae`,
/// `text_encoder` and `scheduler` config sections (configs/models/*.json). The sections are validated by the
/// same config records that load a finished model, so an architecture that trains also loads.
public sealed class PretrainArchitecture
{
    /// Named architectures are looked up here, next to the binaries (copied from the repo's configs/models/).
    public static string BundledFolder => Path.Combine(AppContext.BaseDirectory, "configs", "models");

    /// CLIP's BPE tokenizer files bundled with cdiff (configs/tokenizer/clip/), copied into every pretrained model.
    public static string BundledTokenizerFolder => ContinualDiffusion.Text.ClipTokenizerFiles.BundledFolder;

    public const string DefaultName = "fashion";

    public required string Source { get; init; }
    public required JsonObject Unet { get; init; }
    public required JsonObject Vae { get; init; }
    public required JsonObject TextEncoder { get; init; }
    public required JsonObject Scheduler { get; init; }

    /// SHA-256 of the file's bytes: part of the pretrain fingerprint.
    public required string ContentHash { get; init; }

    /// `nameOrPath`: a bundled name (tiny, fashion) or a path to a JSON file.
    public static PretrainArchitecture Load(string nameOrPath)
    {
        var path = File.Exists(nameOrPath) || nameOrPath.Contains('/') || nameOrPath.EndsWith(".json", StringComparison.Ordinal)
            ? Path.GetFullPath(nameOrPath)
            : Path.Combine(BundledFolder, nameOrPath + ".json");
        if (!File.Exists(path))
            throw new InputException($"--arch {nameOrPath}: {path} not found (expected a bundled name such as '{DefaultName}' or 'tiny', or a JSON file with unet/vae/text_encoder/scheduler sections)");
        var bytes = File.ReadAllBytes(path);
        JsonObject root;
        try { root = JsonNode.Parse(bytes) as JsonObject ?? throw new ConfigException($"{path}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new ConfigException($"{path}: not valid JSON ({e.Message})"); }
        JsonObject Section(string name) => root[name] as JsonObject ?? throw new ConfigException($"{path}: missing section '{name}' (an object of diffusers config keys)");
        var arch = new PretrainArchitecture
        {
            Source = path,
            Unet = Section("unet"),
            Vae = Section("vae"),
            TextEncoder = Section("text_encoder"),
            Scheduler = Section("scheduler"),
            ContentHash = Convert.ToHexStringLower(SHA256.HashData(bytes)),
        };
        arch.Validate();
        return arch;
    }

    /// Parses every section now so that a bad key fails before any training, naming the file and section.
    private void Validate()
    {
        _ = UnetConfig(8);
        _ = VaeConfig(32, 1.0);
        _ = TextEncoderConfig();
        _ = SchedulerConfig();
    }

    /// The UNet config for latents of side `latentSide` (sample_size follows the training resolution).
    public UNetConfig UnetConfig(int latentSide)
    {
        var c = JsonConfig.Parse<UNetConfig>(UnetJson(latentSide).ToJsonString(), $"{Source} (unet)") with { Source = $"{Source} (unet)" };
        c.Validate();
        return c;
    }

    public VaeConfig VaeConfig(int resolution, double scalingFactor)
    {
        var c = JsonConfig.Parse<VaeConfig>(VaeJson(resolution, scalingFactor).ToJsonString(), $"{Source} (vae)") with { Source = $"{Source} (vae)" };
        c.Validate();
        return c;
    }

    public ClipTextConfig TextEncoderConfig()
    {
        var c = JsonConfig.Parse<ClipTextConfig>(TextEncoderJson().ToJsonString(), $"{Source} (text_encoder)");
        c.Validate($"{Source} (text_encoder)");
        return c;
    }

    public SchedulerConfig SchedulerConfig() => Schedulers.SchedulerConfig.Parse(SchedulerJson().ToJsonString(), $"{Source} (scheduler)");

    /// The section as written to unet/config.json: diffusers' class tag plus the sample size of this resolution.
    public JsonObject UnetJson(int latentSide) => Tagged(Unet, "UNet2DConditionModel", ("sample_size", latentSide));

    /// vae/config.json: `scaling_factor` is measured on the training latents (1 / their standard deviation) so
    /// the UNet sees unit-variance latents, as SD's 0.18215 was chosen for its VAE.
    public JsonObject VaeJson(int resolution, double scalingFactor) =>
        Tagged(Vae, "AutoencoderKL", ("sample_size", resolution), ("scaling_factor", scalingFactor));

    public JsonObject TextEncoderJson()
    {
        var o = (JsonObject)TextEncoder.DeepClone();
        o["architectures"] ??= new JsonArray("CLIPTextModel");
        o["model_type"] ??= "clip_text_model";
        o["torch_dtype"] ??= "float32";
        return o;
    }

    public JsonObject SchedulerJson() => Tagged(Scheduler, "DDIMScheduler");

    private static JsonObject Tagged(JsonObject section, string className, params (string Key, double Value)[] overrides)
    {
        var o = new JsonObject { ["_class_name"] = className, ["_diffusers_version"] = "0.27.2" };
        foreach (var (k, v) in section) o[k] = v?.DeepClone();
        foreach (var (k, v) in overrides) o[k] = v == Math.Floor(v) && Math.Abs(v) < int.MaxValue && k != "scaling_factor" ? JsonValue.Create((int)v) : JsonValue.Create(v);
        return o;
    }

    /// Human-readable summary for logs: "fashion.json".
    public override string ToString() => Path.GetFileName(Source);
}
