using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// The five parts of a Stable Diffusion pipeline, loaded from a diffusers-format folder or an original-LDM single
/// file: tokenizer, CLIP text encoder, UNet, VAE and the scheduler config. Loading is strict (every tensor by name
/// and shape).
public sealed class StableDiffusion : IDisposable
{
    public required ClipTokenizer Tokenizer { get; init; }
    public required ClipTextModel TextEncoder { get; init; }
    public required UNet2DConditionModel Unet { get; init; }
    public required AutoencoderKL Vae { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public required Device Device { get; init; }

    /// The dtype the frozen weights are held in (float32 unless `--dtype` says otherwise).
    public ComputePrecision Precision { get; init; } = ComputePrecision.Float32;

    /// Latent side = image side / VaeScaleFactor (8 for SD, 2 for the tiny test model).
    public int VaeScaleFactor => Vae.VaeScaleFactor;

    /// Opens `path` as a single-file checkpoint when it is a file, else as a diffusers folder (BaseModelSource decides).
    /// `singleFile` describes what a single file cannot say; a diffusers folder carries its own configs, so giving it
    /// one is an error.
    public static StableDiffusion Open(string path, SingleFileOptions? singleFile = null, Device? device = null, ComputePrecision? precision = null)
    {
        using var source = BaseModelSource.Open(path, singleFile);
        return Load(source, device, precision);
    }

    /// Builds the pipeline from an opened base model, whichever form it has.
    public static StableDiffusion Load(BaseModelSource source, Device? device = null, ComputePrecision? precision = null) =>
        source.SingleFile is { } file ? Load(file, device, precision) : Load(source.Folder!, device, precision);

    /// Builds the pipeline from an opened single-file checkpoint: configs inferred from its header, weights renamed
    /// from the LDM layout, the bundled CLIP tokenizer with the generation's pad token, LDM's DDIM schedule.
    public static StableDiffusion Load(SingleFileCheckpoint checkpoint, Device? device = null, ComputePrecision? precision = null)
    {
        Runtime.TorchSetup.Initialize();
        device ??= torch.CPU;
        var architecture = checkpoint.Architecture;
        var tokenizer = checkpoint.CreateTokenizer();
        if (tokenizer.BaseVocabularySize != architecture.TextEncoder.VocabSize)
            throw new CheckpointMismatchException($"{checkpoint.Path}: the text encoder has {architecture.TextEncoder.VocabSize} token embeddings, CLIP's tokenizer {tokenizer.BaseVocabularySize}: a file with extra tokens needs the tokenizer they were trained with");
        ClipTextModel? textEncoder = null;
        UNet2DConditionModel? unet = null;
        AutoencoderKL? vae = null;
        try
        {
            textEncoder = Runtime.TensorOwnership.Build(() => new ClipTextModel(architecture.TextEncoder, device));
            checkpoint.LoadWeights(textEncoder, SdComponent.TextEncoder);
            unet = Runtime.TensorOwnership.Build(() => new UNet2DConditionModel(architecture.Unet));
            checkpoint.LoadWeights(unet, SdComponent.Unet);
            vae = Runtime.TensorOwnership.Build(() => new AutoencoderKL(architecture.Vae));
            checkpoint.LoadWeights(vae, SdComponent.Vae);
        }
        catch
        {
            textEncoder?.Dispose();
            unet?.Dispose();
            vae?.Dispose();
            throw;
        }
        precision ??= ComputePrecision.Float32;
        Place(textEncoder, unet, vae, device, precision);
        return new StableDiffusion
        {
            Precision = precision,
            Tokenizer = tokenizer,
            TextEncoder = textEncoder,
            Unet = unet,
            Vae = vae,
            SchedulerConfig = architecture.Scheduler,
            Device = device,
        };
    }

    public static StableDiffusion Load(DiffusersFolder folder, Device? device = null, ComputePrecision? precision = null)
    {
        Runtime.TorchSetup.Initialize();
        device ??= torch.CPU;
        var unetConfig = UNetConfig.Load(folder.UnetConfigPath);
        var vaeConfig = VaeConfig.Load(folder.VaeConfigPath);
        WeightsSizeCheck.Require(unetConfig.MinimumParameters(), folder.UnetConfigPath, folder.UnetWeightsPath);
        WeightsSizeCheck.Require(vaeConfig.MinimumParameters(), folder.VaeConfigPath, folder.VaeWeightsPath);
        var textEncoder = ClipTextModel.FromPretrained(Path.GetDirectoryName(folder.TextEncoderWeightsPath)!, device);
        UNet2DConditionModel? unet = null;
        AutoencoderKL? vae = null;
        try
        {
            unet = Runtime.TensorOwnership.Build(() => new UNet2DConditionModel(unetConfig));
            StateDictLoader.LoadStrict(unet, folder.UnetWeightsPath);
            vae = Runtime.TensorOwnership.Build(() => new AutoencoderKL(vaeConfig));
            StateDictLoader.LoadStrict(vae, folder.VaeWeightsPath);
        }
        catch
        {
            textEncoder.Dispose();
            unet?.Dispose();
            vae?.Dispose();
            throw;
        }
        precision ??= ComputePrecision.Float32;
        Place(textEncoder, unet, vae, device, precision);
        return new StableDiffusion
        {
            Precision = precision,
            Tokenizer = ClipTokenizer.FromFolder(folder.TokenizerDir),
            TextEncoder = textEncoder,
            Unet = unet,
            Vae = vae,
            SchedulerConfig = SchedulerConfig.Load(folder.SchedulerConfigPath),
            Device = device,
        };
    }

    /// Moves the loaded (float32) parts to `device` and their floating-point weights to the precision's dtypes, in eval mode.
    public static void Place(ClipTextModel textEncoder, UNet2DConditionModel unet, AutoencoderKL vae, Device device, ComputePrecision precision)
    {
        // Cast where the weights are, then move: a GPU never holds the float32 copy of a half-precision model.
        if (precision.Weights != ScalarType.Float32)
        {
            textEncoder.to(precision.Weights);
            unet.to(precision.Weights);
        }
        if (precision.VaeWeights != ScalarType.Float32) vae.to(precision.VaeWeights);
        textEncoder.to(device).eval();
        unet.to(device).eval();
        vae.to(device).eval();
    }

    /// Freezes every weight (training then opts the adapters and the new token in explicitly).
    public void Freeze()
    {
        using var scope = torch.NewDisposeScope(); // owns any parameter wrappers the enumeration makes
        foreach (var p in TextEncoder.parameters()) p.requires_grad = false;
        foreach (var p in Unet.parameters()) p.requires_grad = false;
        foreach (var p in Vae.parameters()) p.requires_grad = false;
    }

    /// The layers C-LoRA adapts: every cross-attention (attn2) key and value projection of the UNet.
    public IReadOnlyList<LoraTarget> CrossAttentionKeyValueTargets() =>
        Unet.CrossAttentions()
            .SelectMany(c => LoraTarget.KeyValue(c.Prefix, c.Attention.ToK, c.Attention.ToV, c.Attention.ReplaceProjection))
            .ToList();

    /// Registers a learned concept token with its embedding row (tokenizer id after the vocabulary, new row in
    /// the text encoder's embedding matrix).
    public long AddConcept(string token, Tensor embedding)
    {
        long id = Tokenizer.AddConceptToken(token);
        if (TextEncoder.VocabSize <= id) TextEncoder.ResizeTokenEmbeddings((int)id + 1);
        TextEncoder.SetTokenEmbedding(id, embedding);
        return id;
    }

    /// Registers a textual-inversion embedding of n vectors [n, hidden] under `word` (ClipTokenizer.AddEmbeddingWord:
    /// the tokens word, word_1, …, after every id in use) and writes each vector into its new row of the text encoder's
    /// token embedding. Returns the ids. Concept tokens (AddConcept) must be added before.
    public IReadOnlyList<long> AddEmbedding(string word, Tensor vectors)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        if (vectors.dim() != 2 || vectors.shape[1] != TextEncoder.HiddenSize)
            throw new ArgumentException($"embedding vectors have shape [{string.Join(", ", vectors.shape)}], expected [n, {TextEncoder.HiddenSize}]", nameof(vectors));
        var ids = Tokenizer.AddEmbeddingWord(word, (int)vectors.shape[0]);
        if (TextEncoder.VocabSize <= ids[^1]) TextEncoder.ResizeTokenEmbeddings((int)ids[^1] + 1);
        using var scope = torch.NewDisposeScope(); // the row views
        for (int i = 0; i < ids.Count; i++) TextEncoder.SetTokenEmbedding(ids[i], vectors[i]);
        return ids;
    }

    /// Token ids (N, 77) for prompts, on the model's device.
    public Tensor Tokenize(IReadOnlyList<string> prompts, Action<string>? warn = null)
    {
        var encoded = prompts.Select(p =>
        {
            var t = Tokenizer.Encode(p);
            if (t.Truncated) warn?.Invoke($"prompt is longer than {Tokenizer.ModelMaxLength} tokens; {t.DroppedTokenCount} token(s) were dropped: \"{p}\"");
            return t;
        }).ToList();
        using var ids = ClipTokenizer.ToTensor(encoded);
        return ids.to(Device);
    }

    public void Dispose()
    {
        TextEncoder.Dispose();
        Unet.Dispose();
        Vae.Dispose();
    }
}
