using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Models;

/// transformers' CLIPTextConfig as saved in a diffusers `text_encoder/config.json`. Defaults are
/// transformers 4.40's. Every key the SD 1.x/2.x files carry is modelled; keys that do not affect the
/// computation (dropouts, initializer settings, projection_dim, dtype, versions) are accepted and ignored:
/// the text encoder is frozen and run without dropout here.
public sealed record ClipTextConfig
{
    public IReadOnlyList<string>? Architectures { get; init; }
    public double AttentionDropout { get; init; }
    public double Dropout { get; init; }
    public long BosTokenId { get; init; } = 49406;
    public long EosTokenId { get; init; } = 49407;
    public long PadTokenId { get; init; } = 1;
    public string HiddenAct { get; init; } = "quick_gelu";
    public int HiddenSize { get; init; } = 512;
    public double InitializerFactor { get; init; } = 1.0;
    public double InitializerRange { get; init; } = 0.02;
    public int IntermediateSize { get; init; } = 2048;
    public double LayerNormEps { get; init; } = 1e-5;
    public int MaxPositionEmbeddings { get; init; } = 77;
    public string ModelType { get; init; } = "clip_text_model";
    public int NumAttentionHeads { get; init; } = 8;
    public int NumHiddenLayers { get; init; } = 12;
    public int ProjectionDim { get; init; } = 512;
    public string? TorchDtype { get; init; }
    public string? TransformersVersion { get; init; }
    public int VocabSize { get; init; } = 49408;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// transformers 4.40 CLIPTextTransformer: with the legacy eos_token_id == 2 (every SD 1.x/2.x config)
    /// the pooled position is argmax(input_ids), i.e. the eos token because it has the highest id;
    /// otherwise it is the first position whose id equals eos_token_id.
    public bool PoolsAtArgmaxId => EosTokenId == 2;

    public static ClipTextConfig Load(string path)
    {
        var config = JsonConfig.Load<ClipTextConfig>(path);
        config.Validate(path);
        return config;
    }

    /// A lower bound of the parameter count (attention and MLP weights, token and position embeddings), for
    /// refusing a config that does not fit its weights before building it.
    public double MinimumParameters() =>
        NumHiddenLayers * (4.0 * HiddenSize * HiddenSize + 2.0 * HiddenSize * IntermediateSize) + ((double)VocabSize + MaxPositionEmbeddings) * HiddenSize;

    /// Rejects values this implementation cannot honour, naming the file and key.
    public void Validate(string source)
    {
        if (ModelType != "clip_text_model")
            throw new ConfigException($"{source}: key 'model_type': expected 'clip_text_model', got '{ModelType}'");
        if (Architectures is not null && Architectures.Any(a => a != "CLIPTextModel"))
            throw new ConfigException($"{source}: key 'architectures': only CLIPTextModel is supported, got [{string.Join(", ", Architectures)}]");
        if (HiddenAct is not ("quick_gelu" or "gelu"))
            throw new ConfigException($"{source}: key 'hidden_act': expected 'quick_gelu' or 'gelu', got '{HiddenAct}'");
        RequirePositive(HiddenSize, "hidden_size", source);
        RequirePositive(IntermediateSize, "intermediate_size", source);
        RequirePositive(NumAttentionHeads, "num_attention_heads", source);
        RequirePositive(NumHiddenLayers, "num_hidden_layers", source);
        if (NumHiddenLayers > MaxLayers)
            throw new ConfigException($"{source}: key 'num_hidden_layers': {NumHiddenLayers} is far beyond any CLIP text encoder (at most {MaxLayers} accepted)");
        RequirePositive(MaxPositionEmbeddings, "max_position_embeddings", source);
        RequirePositive(VocabSize, "vocab_size", source);
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ConfigException($"{source}: key 'num_attention_heads': {NumAttentionHeads} does not divide hidden_size {HiddenSize}");
        if (!(LayerNormEps > 0))
            throw new ConfigException($"{source}: key 'layer_norm_eps': expected a positive number, got {LayerNormEps}");
        if (TorchDtype is not (null or "float32" or "float16" or "bfloat16"))
            throw new ConfigException($"{source}: key 'torch_dtype': expected float32, float16 or bfloat16, got '{TorchDtype}'");
    }

    /// A sanity bound (real encoders have 12–32 layers) that keeps a damaged config from building a huge model.
    private const int MaxLayers = 1024;

    private static void RequirePositive(int value, string key, string source)
    {
        if (value <= 0) throw new ConfigException($"{source}: key '{key}': expected a positive integer, got {value}");
    }
}
