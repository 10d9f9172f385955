using System.Security.Cryptography;
using System.Text;

namespace ContinualDiffusion.Checkpoints;

/// A diffusers-format Stable Diffusion folder (what `StableDiffusionPipeline.save_pretrained` writes):
/// model_index.json and the unet/, vae/, text_encoder/, tokenizer/, scheduler/ components, weights in
/// safetensors. Opening validates that every file is there; an error names the missing file and what was expected.
public sealed class DiffusersFolder
{
    public string Root { get; }
    public string UnetConfigPath => Path.Combine(Root, "unet", "config.json");
    public string UnetWeightsPath { get; }
    public string VaeConfigPath => Path.Combine(Root, "vae", "config.json");
    public string VaeWeightsPath { get; }
    public string TextEncoderConfigPath => Path.Combine(Root, "text_encoder", "config.json");
    public string TextEncoderWeightsPath { get; }
    public string TokenizerDir => Path.Combine(Root, "tokenizer");
    public string SchedulerConfigPath => Path.Combine(Root, "scheduler", "scheduler_config.json");

    private DiffusersFolder(string root, string unetWeights, string vaeWeights, string textWeights)
    {
        Root = root; UnetWeightsPath = unetWeights; VaeWeightsPath = vaeWeights; TextEncoderWeightsPath = textWeights;
    }

    public static DiffusersFolder Open(string path)
    {
        var root = Path.GetFullPath(path);
        if (File.Exists(root))
        {
            PickleRefusal.ThrowIfPickle(root, "the model");
            throw new InputException($"{root}: is a file; expected a diffusers-format Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)");
        }
        if (!Directory.Exists(root)) throw new InputException($"{root}: model folder not found (expected a diffusers-format Stable Diffusion folder)");
        Require(Path.Combine(root, "model_index.json"), "a diffusers-format folder starts with model_index.json");
        RequireJsonObject(Path.Combine(root, "model_index.json"));
        foreach (var component in new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" })
            if (!Directory.Exists(Path.Combine(root, component)))
                throw new InputException($"{Path.Combine(root, component)}: missing component folder (a diffusers-format folder has unet/, vae/, text_encoder/, tokenizer/, scheduler/)");
        var folder = new DiffusersFolder(root,
            Weights(root, "unet", "diffusion_pytorch_model"),
            Weights(root, "vae", "diffusion_pytorch_model"),
            Weights(root, "text_encoder", "model"));
        Require(folder.UnetConfigPath, "the UNet's config");
        Require(folder.VaeConfigPath, "the VAE's config");
        Require(folder.TextEncoderConfigPath, "the text encoder's config");
        Require(folder.SchedulerConfigPath, "the scheduler's config");
        Require(Path.Combine(folder.TokenizerDir, "vocab.json"), "CLIP's BPE vocabulary");
        Require(Path.Combine(folder.TokenizerDir, "merges.txt"), "CLIP's BPE merges");
        return folder;
    }

    /// `<name>.safetensors`, else the `.fp16.safetensors` variant; PyTorch pickles (.bin) are not read.
    private static string Weights(string root, string component, string stem)
    {
        var plain = Path.Combine(root, component, stem + ".safetensors");
        if (File.Exists(plain)) return plain;
        var fp16 = Path.Combine(root, component, stem + ".fp16.safetensors");
        if (File.Exists(fp16)) return fp16;
        var pickle = Path.Combine(root, component, stem + ".bin");
        if (File.Exists(pickle)) throw PickleRefusal.Refuse(pickle, $"the {component} weights ({stem}.safetensors)");
        throw new InputException($"{plain}: missing (the {component} weights, as safetensors)");
    }

    private static void RequireJsonObject(string file)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file)); // ReadAllText drops a BOM
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object) throw new InputException($"{file}: expected a JSON object");
        }
        catch (System.Text.Json.JsonException e) { throw new InputException($"{file}: not valid JSON ({e.Message})"); }
    }

    private static void Require(string file, string what)
    {
        if (!File.Exists(file)) throw new InputException($"{file}: missing ({what})");
    }

    public IEnumerable<string> ConfigFiles =>
    [
        Path.Combine(Root, "model_index.json"), UnetConfigPath, VaeConfigPath, TextEncoderConfigPath, SchedulerConfigPath,
        .. Directory.EnumerateFiles(TokenizerDir).Order(StringComparer.Ordinal),
    ];

    public IEnumerable<string> WeightFiles => [UnetWeightsPath, VaeWeightsPath, TextEncoderWeightsPath];

    /// SHA-256 over every config (whole) and weights file, each as its relative name, size and content summary.
    /// Weights are summarised by their first and last MiB and their size: hashing 4 GB on every task would cost
    /// a minute, and a different model always differs in its safetensors header (first MiB) or size.
    public string ComputeIdentityHash()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in ConfigFiles)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(Root, f) + "\n"));
            sha.AppendData(File.ReadAllBytes(f));
        }
        foreach (var f in WeightFiles)
        {
            using var s = File.OpenRead(f);
            sha.AppendData(Encoding.UTF8.GetBytes($"{Path.GetRelativePath(Root, f)}:{s.Length}\n"));
            IdentityHashing.AppendHeadAndTail(sha, s);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
