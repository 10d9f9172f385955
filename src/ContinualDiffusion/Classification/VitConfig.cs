using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Classification;

/// A small Vision Transformer (Dosovitskiy et al., ICLR 2021) in timm's layout, as a JSON config beside the
/// diffusion models' (`configs/models/vit-*.json`): square single- or multi-channel images cut into
/// patch_size × patch_size patches, a class token, learned position embeddings, `depth` pre-LayerNorm blocks of
/// `num_heads`-head self-attention and a GELU MLP, a final LayerNorm; the class token's output is the feature.
public sealed record VitConfig
{
    public int ImageSize { get; init; } = 28;
    public int InChannels { get; init; } = 1;
    public int PatchSize { get; init; } = 4;
    public int EmbedDim { get; init; } = 64;
    public int Depth { get; init; } = 4;
    public int NumHeads { get; init; } = 4;
    public int MlpDim { get; init; } = 128;
    public double LayerNormEps { get; init; } = 1e-6;

    /// Patches per image side and in all.
    public int PatchesPerSide => ImageSize / PatchSize;
    public int NumPatches => PatchesPerSide * PatchesPerSide;

    /// Tokens a block sees without prompts: the patches and the class token.
    public int NumTokens => NumPatches + 1;

    public static VitConfig Load(string path)
    {
        var config = JsonConfig.Load<VitConfig>(path);
        config.Validate(path);
        return config;
    }

    /// Rejects values the model cannot be built with, naming the source and key.
    public void Validate(string source)
    {
        Positive(ImageSize, "image_size", source);
        Positive(InChannels, "in_channels", source);
        Positive(PatchSize, "patch_size", source);
        Positive(EmbedDim, "embed_dim", source);
        Positive(Depth, "depth", source);
        Positive(NumHeads, "num_heads", source);
        Positive(MlpDim, "mlp_dim", source);
        if (ImageSize % PatchSize != 0)
            throw new ConfigException($"{source}: key 'patch_size': {PatchSize} does not divide image_size {ImageSize}");
        if (EmbedDim % NumHeads != 0)
            throw new ConfigException($"{source}: key 'num_heads': {NumHeads} does not divide embed_dim {EmbedDim}");
        if (!(LayerNormEps > 0)) throw new ConfigException($"{source}: key 'layer_norm_eps': expected a positive number, got {LayerNormEps}");
    }

    private static void Positive(int value, string key, string source)
    {
        if (value < 1) throw new ConfigException($"{source}: key '{key}': expected a positive integer, got {value}");
    }
}
