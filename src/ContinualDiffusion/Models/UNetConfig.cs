using System.Text.Json;
using System.Text.Json.Serialization;
using ContinualDiffusion.Configuration;
using static ContinualDiffusion.Models.ConfigRules;

namespace ContinualDiffusion.Models;

/// diffusers' `unet/config.json` for UNet2DConditionModel (0.27.2 keys; defaults are diffusers' defaults).
/// Every key of a diffusers 0.27 config is modelled so real configs load; values that select features we do
/// not implement (class/addition embeddings, GLIGEN, dual cross-attention, ...) are rejected by `Validate`.
public sealed record UNetConfig
{
    public const string CrossAttnDownBlock = "CrossAttnDownBlock2D";
    public const string DownBlock = "DownBlock2D";
    public const string CrossAttnUpBlock = "CrossAttnUpBlock2D";
    public const string UpBlock = "UpBlock2D";
    public const string CrossAttnMidBlock = "UNetMidBlock2DCrossAttn";

    /// Where the config came from, for error messages (the file path when loaded with `Load`).
    [JsonIgnore] public string Source { get; init; } = "unet config";

    public int SampleSize { get; init; } = 64;
    public int InChannels { get; init; } = 4;
    public int OutChannels { get; init; } = 4;
    public bool CenterInputSample { get; init; }
    public bool FlipSinToCos { get; init; } = true;
    public int FreqShift { get; init; }
    public string[] DownBlockTypes { get; init; } = [CrossAttnDownBlock, CrossAttnDownBlock, CrossAttnDownBlock, DownBlock];
    public string? MidBlockType { get; init; } = CrossAttnMidBlock;
    public string[] UpBlockTypes { get; init; } = [UpBlock, CrossAttnUpBlock, CrossAttnUpBlock, CrossAttnUpBlock];
    public PerBlockFlag OnlyCrossAttention { get; init; } = false;
    public int[] BlockOutChannels { get; init; } = [320, 640, 1280, 1280];
    public PerBlock LayersPerBlock { get; init; } = 2;
    public int DownsamplePadding { get; init; } = 1;
    public double MidBlockScaleFactor { get; init; } = 1;
    public double Dropout { get; init; }
    public string ActFn { get; init; } = "silu";
    public int? NormNumGroups { get; init; } = 32;
    public double NormEps { get; init; } = 1e-5;
    public PerBlock CrossAttentionDim { get; init; } = 1280;
    public PerBlock TransformerLayersPerBlock { get; init; } = 1;
    public JsonElement? ReverseTransformerLayersPerBlock { get; init; }
    public int? EncoderHidDim { get; init; }
    public string? EncoderHidDimType { get; init; }
    /// For SD 1.x/2.x configs this is, despite its name, the number of heads (diffusers issue #2011).
    public PerBlock AttentionHeadDim { get; init; } = 8;
    public PerBlock? NumAttentionHeads { get; init; }
    public bool DualCrossAttention { get; init; }
    public bool UseLinearProjection { get; init; }
    public string? ClassEmbedType { get; init; }
    public string? AdditionEmbedType { get; init; }
    public int? AdditionTimeEmbedDim { get; init; }
    public int? NumClassEmbeds { get; init; }
    public bool UpcastAttention { get; init; }
    public string ResnetTimeScaleShift { get; init; } = "default";
    public bool ResnetSkipTimeAct { get; init; }
    public double ResnetOutScaleFactor { get; init; } = 1.0;
    public string TimeEmbeddingType { get; init; } = "positional";
    public int? TimeEmbeddingDim { get; init; }
    public string? TimeEmbeddingActFn { get; init; }
    public string? TimestepPostAct { get; init; }
    public int? TimeCondProjDim { get; init; }
    public int ConvInKernel { get; init; } = 3;
    public int ConvOutKernel { get; init; } = 3;
    public int? ProjectionClassEmbeddingsInputDim { get; init; }
    public string AttentionType { get; init; } = "default";
    public bool ClassEmbeddingsConcat { get; init; }
    public bool? MidBlockOnlyCrossAttention { get; init; }
    public string? CrossAttentionNorm { get; init; }
    public int AdditionEmbedTypeNumHeads { get; init; } = 64;

    /// Loads and validates `path` (a diffusers unet/config.json).
    public static UNetConfig Load(string path)
    {
        var config = JsonConfig.Load<UNetConfig>(path) with { Source = path };
        config.Validate();
        return config;
    }

    [JsonIgnore] public int BlockCount => BlockOutChannels.Length;

    /// Width of the sinusoidal timestep features (time_proj output).
    [JsonIgnore] public int TimestepInputDim => BlockOutChannels[0];

    /// Width of the timestep embedding fed to every resnet.
    [JsonIgnore] public int TimeEmbedDim => TimeEmbeddingDim ?? BlockOutChannels[0] * 4;

    /// Heads per down block: `num_attention_heads or attention_head_dim` (diffusers' naming quirk), one per block.
    public int[] AttentionHeads() => (NumAttentionHeads ?? AttentionHeadDim)
        .Expand(BlockCount, Source, NumAttentionHeads is null ? "attention_head_dim" : "num_attention_heads");

    /// A lower bound of the parameter count (down blocks' second resnet convolutions and cross-attention K/V
    /// projections), for refusing a config that does not fit its weights before building it.
    public double MinimumParameters()
    {
        int[] layers = LayersPerBlockList(), transformer = TransformerLayers(), cross = CrossAttentionDims();
        double total = 0;
        for (int b = 0; b < BlockCount; b++)
        {
            double c = BlockOutChannels[b];
            total += layers[b] * 9 * c * c;
            if (DownBlockTypes[b] == CrossAttnDownBlock) total += layers[b] * transformer[b] * 2 * c * cross[b];
        }
        return total;
    }

    public int[] LayersPerBlockList() => LayersPerBlock.Expand(BlockCount, Source, "layers_per_block");

    public int[] CrossAttentionDims() => CrossAttentionDim.Expand(BlockCount, Source, "cross_attention_dim");

    public int[] TransformerLayers() => TransformerLayersPerBlock.Expand(BlockCount, Source, "transformer_layers_per_block");

    /// GroupNorm groups; validated non-null.
    [JsonIgnore] public int Groups => NormNumGroups ?? throw new ConfigException($"{Source}: key 'norm_num_groups' must not be null");

    /// Throws a ConfigException naming the file and key for any value this implementation does not support.
    public void Validate()
    {
        var s = Source;
        Require(BlockCount > 0, s, "block_out_channels", BlockOutChannels, "a non-empty list");
        RequireAll(BlockOutChannels, c => c > 0, s, "block_out_channels", "positive channel counts");
        Require(DownBlockTypes.Length == BlockCount, s, "down_block_types", DownBlockTypes, $"{BlockCount} entries (one per block_out_channels)");
        Require(UpBlockTypes.Length == BlockCount, s, "up_block_types", UpBlockTypes, $"{BlockCount} entries (one per block_out_channels)");
        foreach (var t in DownBlockTypes) Require(t is CrossAttnDownBlock or DownBlock, s, "down_block_types", t, $"'{CrossAttnDownBlock}' or '{DownBlock}'");
        foreach (var t in UpBlockTypes) Require(t is CrossAttnUpBlock or UpBlock, s, "up_block_types", t, $"'{CrossAttnUpBlock}' or '{UpBlock}'");
        Require(MidBlockType == CrossAttnMidBlock, s, "mid_block_type", MidBlockType, $"'{CrossAttnMidBlock}'");
        RequirePositive(s, "in_channels", InChannels);
        RequirePositive(s, "out_channels", OutChannels);
        Require(!OnlyCrossAttention.Any, s, "only_cross_attention", OnlyCrossAttention, "false");
        Require(ActFn == "silu", s, "act_fn", ActFn, "'silu'");
        Require(NormNumGroups is > 0, s, "norm_num_groups", NormNumGroups, "a positive integer");
        RequireAll(BlockOutChannels, c => c % Groups == 0, s, "block_out_channels", $"multiples of norm_num_groups ({Groups})");
        Require(NormEps > 0, s, "norm_eps", NormEps, "a positive number");
        Require(DownsamplePadding >= 0, s, "downsample_padding", DownsamplePadding, "0 or more");
        Require(Dropout is >= 0 and < 1, s, "dropout", Dropout, "a probability in [0, 1)");
        Require(ConvInKernel is > 0 && ConvInKernel % 2 == 1, s, "conv_in_kernel", ConvInKernel, "an odd kernel size");
        Require(ConvOutKernel is > 0 && ConvOutKernel % 2 == 1, s, "conv_out_kernel", ConvOutKernel, "an odd kernel size");
        Require(TimeEmbedDim > 0, s, "time_embedding_dim", TimeEmbeddingDim, "a positive integer");
        RequireAll(AttentionHeads(), h => h > 0, s, NumAttentionHeads is null ? "attention_head_dim" : "num_attention_heads", "positive head counts");
        RequireAll(LayersPerBlockList(), n => n is > 0 and <= 64, s, "layers_per_block", "layer counts in 1..64");
        Require(BlockCount <= 16, s, "block_out_channels", BlockOutChannels, "at most 16 blocks");
        RequireAll(CrossAttentionDims(), d => d > 0, s, "cross_attention_dim", "positive widths");
        RequireAll(TransformerLayers(), n => n is > 0 and <= 64, s, "transformer_layers_per_block", "layer counts in 1..64");

        Require(ReverseTransformerLayersPerBlock is null || ReverseTransformerLayersPerBlock.Value.ValueKind == JsonValueKind.Null,
            s, "reverse_transformer_layers_per_block", ReverseTransformerLayersPerBlock?.ToString(), "null");
        RequireNull(s, "encoder_hid_dim", EncoderHidDim);
        RequireNull(s, "encoder_hid_dim_type", EncoderHidDimType);
        Require(!DualCrossAttention, s, "dual_cross_attention", DualCrossAttention, "false");
        RequireNull(s, "class_embed_type", ClassEmbedType);
        RequireNull(s, "addition_embed_type", AdditionEmbedType);
        RequireNull(s, "addition_time_embed_dim", AdditionTimeEmbedDim);
        RequireNull(s, "num_class_embeds", NumClassEmbeds);
        Require(ResnetTimeScaleShift == "default", s, "resnet_time_scale_shift", ResnetTimeScaleShift, "'default'");
        Require(!ResnetSkipTimeAct, s, "resnet_skip_time_act", ResnetSkipTimeAct, "false");
        Require(TimeEmbeddingType == "positional", s, "time_embedding_type", TimeEmbeddingType, "'positional'");
        RequireNull(s, "time_embedding_act_fn", TimeEmbeddingActFn);
        RequireNull(s, "timestep_post_act", TimestepPostAct);
        RequireNull(s, "time_cond_proj_dim", TimeCondProjDim);
        RequireNull(s, "projection_class_embeddings_input_dim", ProjectionClassEmbeddingsInputDim);
        Require(AttentionType == "default", s, "attention_type", AttentionType, "'default'");
        Require(!ClassEmbeddingsConcat, s, "class_embeddings_concat", ClassEmbeddingsConcat, "false");
        Require(MidBlockOnlyCrossAttention is null or false, s, "mid_block_only_cross_attention", MidBlockOnlyCrossAttention, "null or false");
        RequireNull(s, "cross_attention_norm", CrossAttentionNorm);
    }
}
