using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Interop.SingleFile;

/// The values cdiff reads from an original LDM config (`--original-config`, the yaml the CompVis / Stability
/// repositories ship next to a checkpoint: `v1-inference.yaml`, `v2-inference-v.yaml`, ...). The weights decide every
/// shape; this file supplies what shapes cannot say (attention heads, the prediction type, the noise schedule, the
/// latent scale and resolution, which OpenCLIP layer SD 2 reads) and its shape values are checked against the weights.
/// Every value is optional: null means the file does not say, and the single-file defaults apply.
public sealed record LdmOriginalConfig
{
    private const string Model = "model.params";

    /// The yaml path, for error messages.
    public required string Source { get; init; }

    // model.params (LatentDiffusion)
    public double? LinearStart { get; init; }
    public double? LinearEnd { get; init; }
    public int? Timesteps { get; init; }
    /// diffusers' prediction_type for `parameterization` (eps -> epsilon, v -> v_prediction); null when absent.
    public string? PredictionType { get; init; }
    public double? ScaleFactor { get; init; }
    /// The latent side the model samples at (LatentDiffusion's `image_size`, 64 for SD 1.x, 96 for SD 2 768-v);
    /// not `unet_config.params.image_size`, which the LDM yaml marks "unused" and sets to 32.
    public int? ImageSize { get; init; }

    // model.params.unet_config.params (openaimodel.UNetModel)
    public int? UnetInChannels { get; init; }
    public int? UnetOutChannels { get; init; }
    public int? ModelChannels { get; init; }
    public int[]? ChannelMult { get; init; }
    public int? NumResBlocks { get; init; }
    /// Heads per attention block (SD 1.x: 8); null when the yaml gives -1 or nothing.
    public int? NumHeads { get; init; }
    /// Channels per head (SD 2.x: 64); null when the yaml gives -1 or nothing.
    public int? NumHeadChannels { get; init; }
    public int[]? TransformerDepth { get; init; }
    public int? ContextDim { get; init; }
    public bool? UseLinearInTransformer { get; init; }

    // model.params.first_stage_config.params (AutoencoderKL) and its ddconfig
    public int? VaeCh { get; init; }
    public int[]? VaeChMult { get; init; }
    public int? VaeNumResBlocks { get; init; }
    public int? VaeZChannels { get; init; }
    public int? VaeEmbedDim { get; init; }

    // model.params.cond_stage_config
    public string? CondStageTarget { get; init; }
    /// FrozenOpenCLIPEmbedder's `layer`: "penultimate" (every SD 2.x yaml) or "last".
    public string? OpenClipLayer { get; init; }

    public const string UnetParams = Model + ".unet_config.params";
    public const string DdConfig = Model + ".first_stage_config.params.ddconfig";

    public static LdmOriginalConfig Load(string path)
    {
        var y = YamlSubset.Load(path);
        if (!y.Has("model.params"))
            throw new ConfigException($"{path}: no 'model.params' section: expected an original LDM config (e.g. v1-inference.yaml)");
        if (y.Has(Model + ".network_config"))
            throw new ConfigException($"{path}: key 'model.params.network_config': an SDXL-style (sgm) config; cdiff reads SD 1.x/2.x LDM configs (unet_config)");
        return new LdmOriginalConfig
        {
            Source = path,
            LinearStart = y.Double(Model + ".linear_start"),
            LinearEnd = y.Double(Model + ".linear_end"),
            Timesteps = y.Int(Model + ".timesteps"),
            PredictionType = ReadPredictionType(y),
            ScaleFactor = y.Double(Model + ".scale_factor"),
            ImageSize = y.Int(Model + ".image_size"),
            UnetInChannels = y.Int(UnetParams + ".in_channels"),
            UnetOutChannels = y.Int(UnetParams + ".out_channels"),
            ModelChannels = y.Int(UnetParams + ".model_channels"),
            ChannelMult = y.Ints(UnetParams + ".channel_mult"),
            NumResBlocks = y.Int(UnetParams + ".num_res_blocks"),
            NumHeads = Unset(y.Int(UnetParams + ".num_heads")),
            NumHeadChannels = Unset(y.Int(UnetParams + ".num_head_channels")),
            TransformerDepth = y.Ints(UnetParams + ".transformer_depth"),
            ContextDim = y.Int(UnetParams + ".context_dim"),
            UseLinearInTransformer = y.Bool(UnetParams + ".use_linear_in_transformer"),
            VaeCh = y.Int(DdConfig + ".ch"),
            VaeChMult = y.Ints(DdConfig + ".ch_mult"),
            VaeNumResBlocks = y.Int(DdConfig + ".num_res_blocks"),
            VaeZChannels = y.Int(DdConfig + ".z_channels"),
            VaeEmbedDim = y.Int(Model + ".first_stage_config.params.embed_dim"),
            CondStageTarget = y.String(Model + ".cond_stage_config.target"),
            OpenClipLayer = ReadOpenClipLayer(y),
        };
    }

    /// LDM writes -1 for "not given" (num_heads / num_head_channels: exactly one of them is set).
    private static int? Unset(int? value) => value is null or -1 ? null : value;

    private static string? ReadPredictionType(YamlSubset y) => y.String(Model + ".parameterization") switch
    {
        null => null,
        "eps" => "epsilon",
        "v" => "v_prediction",
        var other => throw new ConfigException($"{y.Source}: key '{Model}.parameterization': '{other}' is not supported (expected eps or v)"),
    };

    /// Read only for FrozenOpenCLIPEmbedder: the SD 1.x FrozenCLIPEmbedder has a `layer` key with other values.
    private static string? ReadOpenClipLayer(YamlSubset y)
    {
        if (y.String(Model + ".cond_stage_config.target") is not { } target || !target.Contains("OpenCLIP", StringComparison.Ordinal)) return null;
        return y.String(Model + ".cond_stage_config.params.layer") switch
        {
            null => null,
            var layer when layer is "penultimate" or "last" => layer,
            var other => throw new ConfigException($"{y.Source}: key '{Model}.cond_stage_config.params.layer': '{other}' is not supported (expected penultimate or last)"),
        };
    }
}
