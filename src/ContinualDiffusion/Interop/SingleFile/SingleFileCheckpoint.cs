using System.Security.Cryptography;
using System.Text;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Text;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// An original-LDM single-file Stable Diffusion checkpoint (`.safetensors` holding `model.diffusion_model.*`,
/// `first_stage_model.*` and `cond_stage_model.*`: the form A1111, ComfyUI and model sites use), opened and checked:
/// anything cdiff cannot run as an SD 1.x/2.x text-to-image model (SDXL, inpainting, other conditioning, a pickle, a
/// safetensors that is not an LDM checkpoint) is refused with one line naming what was found. Opening reads only the
/// header: the architecture and every key's diffusers name and shape are known before a weight is read.
public sealed class SingleFileCheckpoint : IDisposable
{
    private readonly SafeTensorsFile _file;

    public string Path => _file.Path;
    public LdmArchitecture Architecture { get; }
    public LdmMapping Mapping { get; }
    public SingleFileOptions Options { get; }

    private SingleFileCheckpoint(SafeTensorsFile file, LdmArchitecture architecture, LdmMapping mapping, SingleFileOptions options)
    {
        _file = file; Architecture = architecture; Mapping = mapping; Options = options;
    }

    public static SingleFileCheckpoint Open(string path, SingleFileOptions? options = null)
    {
        options ??= new SingleFileOptions();
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new InputException(Directory.Exists(full)
                ? $"{full}: is a folder, expected a single-file .safetensors checkpoint"
                : $"{full}: not found (expected a single-file .safetensors checkpoint)");
        PickleRefusal.ThrowIfPickle(full, "the model");
        var original = options.OriginalConfigPath is { } yaml ? LdmOriginalConfig.Load(System.IO.Path.GetFullPath(yaml)) : null;
        var file = SafeTensorsFile.Open(full);
        try
        {
            RefuseUnsupported(file.Tensors, full);
            var architecture = LdmArchitecture.Infer(file.Tensors, full, original, options.PredictionType);
            var mapping = LdmKeyMap.Map(file.Tensors, architecture.Layout, full);
            if (mapping.Unknown.Count > 0)
                throw new CheckpointMismatchException($"{full}: key '{mapping.Unknown[0]}' fits no rule of the SD 1.x/2.x LDM layout" +
                    (mapping.Unknown.Count > 1 ? $" (and {mapping.Unknown.Count - 1} more)" : ""));
            RequirePlausibleSize(architecture, mapping, full);
            return new SingleFileCheckpoint(file, architecture, mapping, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// Refuses, from the header alone, the files that are not SD 1.x/2.x text-to-image LDM checkpoints, saying
    /// what the file is instead (diffusers' `infer_diffusers_model_type` tells them apart by the same keys).
    public static void RefuseUnsupported(IReadOnlyDictionary<string, SafeTensorInfo> tensors, string source)
    {
        bool Any(string prefix) => tensors.Keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        const string U = LdmKeyMap.UnetPrefix;

        if (Any("conditioner.embedders."))
            throw new InputException($"{source}: an SDXL checkpoint ('conditioner.embedders.*' keys: two text encoders and size conditioning); cdiff loads SD 1.x and 2.x single files");
        if (!Any(U))
        {
            string found = tensors.Count == 0 ? "no tensors" : $"{tensors.Count} tensors, e.g. '{tensors.Keys.Order(StringComparer.Ordinal).First()}'";
            string kind = Any("control_model.") ? "a ControlNet, not a Stable Diffusion checkpoint"
                : Any("lora_unet_") || Any("lora_te_") || tensors.Keys.Any(k => k.Contains(".lora_down.", StringComparison.Ordinal) || k.Contains(".lora.down.", StringComparison.Ordinal)) ? "a LoRA, not a Stable Diffusion checkpoint"
                : Any("down_blocks.") || Any("unet.") || Any("text_model.") ? "diffusers-format weights of one component (give the whole diffusers folder instead)"
                : "not an original-LDM Stable Diffusion checkpoint";
            throw new InputException($"{source}: {kind}: no '{U}*' keys ({found}); expected an SD 1.x/2.x single file as A1111/ComfyUI use, or a diffusers folder");
        }
        if (tensors.TryGetValue(U + "input_blocks.0.0.weight", out var convIn) && convIn.Shape.Length == 4)
        {
            long channels = convIn.Shape[1];
            if (channels == 9)
                throw new InputException($"{source}: an inpainting checkpoint (the UNet's '{U}input_blocks.0.0.weight' takes 9 input channels: latents, mask and masked image); cdiff trains and samples text-to-image models (4 channels)");
            if (channels != 4)
                throw new InputException($"{source}: the UNet's '{U}input_blocks.0.0.weight' takes {channels} input channels ({(channels == 8 ? "an instruct-pix2pix-style image-conditioned model" : channels == 5 ? "a depth-conditioned model" : "not a text-to-image model")}); cdiff trains and samples text-to-image models (4 channels)");
        }
        if (Any(U + "label_emb."))
            throw new InputException($"{source}: a class-conditioned UNet ('{U}label_emb.*', as in SD 2's upscaler and unCLIP models); cdiff loads SD 1.x/2.x text-to-image checkpoints");
        if (!Any(LdmKeyMap.VaePrefix))
            throw new InputException($"{source}: no VAE weights ('{LdmKeyMap.VaePrefix}*'); cdiff needs a complete SD 1.x/2.x single file (UNet, VAE and text encoder)");
        bool clip = Any(LdmKeyMap.ClipPrefix), openClip = Any(LdmKeyMap.OpenClipPrefix);
        if (!clip && !openClip)
            throw new InputException($"{source}: no text encoder weights ('{LdmKeyMap.ClipPrefix}*' for SD 1.x or '{LdmKeyMap.OpenClipPrefix}*' for SD 2.x); cdiff needs a complete single file");
        if (clip && openClip)
            throw new InputException($"{source}: holds both an SD 1.x ('{LdmKeyMap.ClipPrefix}*') and an SD 2.x ('{LdmKeyMap.OpenClipPrefix}*') text encoder");
    }

    /// Refuses a header whose key indices describe far more model than its tensors hold (e.g. a thousand text encoder
    /// layers of which only a norm each is present), before the modules are built: as WeightsSizeCheck does for a
    /// diffusers config, from each config's lower bound of its parameter count and the values mapped to it.
    internal static void RequirePlausibleSize(LdmArchitecture architecture, LdmMapping mapping, string source)
    {
        foreach (var (component, minimum) in new[]
                 {
                     (SdComponent.Unet, architecture.Unet.MinimumParameters()),
                     (SdComponent.Vae, architecture.Vae.MinimumParameters()),
                     (SdComponent.TextEncoder, architecture.TextEncoder.MinimumParameters()),
                 })
        {
            double values = mapping.For(component).Values.Sum(m => m.Shape.Aggregate(1.0, (a, b) => a * b));
            if (minimum > values)
                throw new CheckpointMismatchException($"{source}: the {LdmMapping.Describe(component)} its keys describe needs at least {minimum:N0} parameters, but the file holds {values:N0} values for it: the header is inconsistent");
        }
    }

    /// The file's safetensors header: every LDM key with its dtype and shape.
    public IReadOnlyDictionary<string, SafeTensorInfo> Header => _file.Tensors;

    /// One LDM tensor as stored (a new tensor the caller owns); half precision is upcast to float32 unless `keepDType`.
    public Tensor ReadStored(string ldmKey, bool keepDType = false) => _file.Read(ldmKey, keepDType);

    /// Loads the component's weights into `module` (built from Architecture's config for it), strictly.
    public void LoadWeights(nn.Module module, SdComponent component) =>
        StateDictLoader.LoadStrict(module, new LdmStateDict(_file, Mapping.For(component), component));

    /// CLIP's tokenizer from the BPE files bundled with cdiff (every SD 1.x/2.x model uses the same vocabulary and
    /// merges; a single file carries none), with the generation's pad token: SD 2's tokenizer pads with "!" (id 0).
    public ClipTokenizer CreateTokenizer()
    {
        var files = ClipTokenizerFiles.Read(ClipTokenizerFiles.BundledFolder);
        return ClipTokenizer.FromFiles(files with { PadToken = Architecture.PadToken }, $"{ClipTokenizerFiles.BundledFolder} (for {System.IO.Path.GetFileName(Path)})");
    }

    /// SHA-256 identifying the model a run is bound to, as DiffusersFolder.ComputeIdentityHash does for a folder:
    /// the file's size, first and last MiB (a different model differs in its header or size), and what the options
    /// decide (the yaml's bytes, the prediction type), since the same weights under another yaml are another model.
    public string ComputeIdentityHash()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"ldm-single-file\nprediction_type:{Architecture.Scheduler.PredictionType}\n"));
        if (Options.OriginalConfigPath is { } yaml) sha.AppendData(File.ReadAllBytes(yaml));
        using var s = File.OpenRead(Path);
        sha.AppendData(Encoding.UTF8.GetBytes($"\nweights:{s.Length}\n"));
        IdentityHashing.AppendHeadAndTail(sha, s);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public void Dispose() => _file.Dispose();
}
