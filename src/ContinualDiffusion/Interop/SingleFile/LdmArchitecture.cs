using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;

namespace ContinualDiffusion.Interop.SingleFile;

/// Stable Diffusion generation, told apart by the text encoder a single file carries.
public enum SdVersion
{
    /// OpenAI CLIP ViT-L/14 (transformers names, `cond_stage_model.transformer.`), quick-GELU, 8 heads per UNet block.
    Sd1,
    /// OpenCLIP ViT-H/14 (`cond_stage_model.model.`), GELU, penultimate layer, 64-channel UNet heads, Linear proj_in.
    Sd2,
}

/// The diffusers configs of the pipeline stored in an original-LDM single file, inferred from the shapes in its
/// safetensors header (as diffusers' `create_unet_diffusers_config_from_ldm` / `create_vae_diffusers_config_from_ldm`
/// read them from the LDM yaml, which most files come without). Shapes give every width, depth and block type;
/// what shapes cannot give comes from the optional `--original-config` yaml, else from the SD 1.x/2.x conventions:
/// attention heads (SD 1: 8 per block; SD 2: 64 channels per head), the prediction type (SD 1: epsilon; SD 2: must be
/// named, as 512-base predicts epsilon and 768-v predicts v), the noise schedule (LDM's scaled_linear 0.00085–0.012,
/// 1000 steps) and the latent scale (0.18215). The yaml's shape values are checked against the weights.
public sealed record LdmArchitecture
{
    public required SdVersion Version { get; init; }
    public required UNetConfig Unet { get; init; }
    public required VaeConfig Vae { get; init; }
    public required ClipTextConfig TextEncoder { get; init; }
    public required SchedulerConfig Scheduler { get; init; }

    /// Encoder layers the file holds (OpenCLIP: every resblock, including the unused last one).
    public required int TextEncoderLayersInFile { get; init; }

    /// What the key renaming needs.
    public LdmLayout Layout => new(Unet.LayersPerBlockList()[0], Vae.BlockOutChannels.Length, TextEncoder.NumHiddenLayers);

    /// SD 2's tokenizer pads with "!" (id 0), SD 1's with "<|endoftext|>" (49407). Pad positions reach the
    /// cross-attention, so the wrong pad token changes every image.
    public string PadToken => Version == SdVersion.Sd2 ? "!" : "<|endoftext|>";

    /// LDM's defaults (every SD 1.x/2.x yaml: linear_start 0.00085, linear_end 0.0120, timesteps 1000).
    public const double DefaultBetaStart = 0.00085, DefaultBetaEnd = 0.012;
    public const int DefaultTrainTimesteps = 1000;
    public const double DefaultScaleFactor = 0.18215;

    public static readonly IReadOnlyList<string> PredictionTypes = ["epsilon", "v_prediction"];

    /// Infers the architecture from `tensors` (a header: names and shapes only). `source` names the file in errors;
    /// `predictionType` (epsilon | v_prediction) overrides the yaml's `parameterization`.
    public static LdmArchitecture Infer(IReadOnlyDictionary<string, SafeTensorInfo> tensors, string source,
        LdmOriginalConfig? original = null, string? predictionType = null)
    {
        var h = new Header(tensors, source);
        var version = h.Has(LdmKeyMap.OpenClipPrefix + "token_embedding.weight") ? SdVersion.Sd2 : SdVersion.Sd1;
        var prediction = ResolvePrediction(version, source, original, predictionType);

        var (text, fileLayers) = InferTextEncoder(tensors, source, version, original);
        var vae = InferVae(h, original);
        var unet = InferUnet(h, version, original, prediction);
        if (unet.InChannels != vae.LatentChannels)
            throw new CheckpointMismatchException($"{source}: the UNet takes {unet.InChannels} input channels but the VAE's latents have {vae.LatentChannels}: not a text-to-image model cdiff can run");
        int context = unet.CrossAttentionDims()[0];
        if (context != text.HiddenSize)
            throw new CheckpointMismatchException($"{source}: the UNet's cross-attention reads {context}-wide text states but the text encoder is {text.HiddenSize} wide");

        return new LdmArchitecture
        {
            Version = version,
            Unet = unet,
            Vae = vae with { SampleSize = unet.SampleSize * vae.VaeScaleFactor },
            TextEncoder = text,
            Scheduler = SchedulerFor(source, original, prediction),
            TextEncoderLayersInFile = fileLayers,
        };
    }

    private static string ResolvePrediction(SdVersion version, string source, LdmOriginalConfig? original, string? option)
    {
        if (option is not null)
        {
            if (!PredictionTypes.Contains(option, StringComparer.Ordinal))
                throw new InputException($"--prediction-type: '{option}' is not one of {string.Join(", ", PredictionTypes)}");
            return option;
        }
        if (original?.PredictionType is { } fromYaml) return fromYaml;
        if (version == SdVersion.Sd1) return "epsilon";
        throw new InputException($"{source}: an SD 2.x checkpoint, and the file cannot say what it predicts (2.x-base models predict epsilon, 768-v models v_prediction): pass --prediction-type epsilon|v_prediction or --original-config with its yaml");
    }

    /// diffusers' DDIMScheduler config for an LDM model (`_legacy_load_scheduler`): scaled_linear betas, steps_offset 1,
    /// no clipping, alpha_prod of t = -1 taken from step 0. timestep_spacing is left unset so that every sampler
    /// applies its own default, as with SD 1.5's own scheduler_config.json.
    private static SchedulerConfig SchedulerFor(string source, LdmOriginalConfig? original, string prediction)
    {
        var config = new SchedulerConfig
        {
            Source = original is null ? $"{source} (LDM defaults)" : original.Source,
            ClassName = "DDIMScheduler",
            NumTrainTimesteps = original?.Timesteps ?? DefaultTrainTimesteps,
            BetaStart = original?.LinearStart ?? DefaultBetaStart,
            BetaEnd = original?.LinearEnd ?? DefaultBetaEnd,
            BetaSchedule = "scaled_linear",
            ClipSample = false,
            SetAlphaToOne = false,
            StepsOffset = 1,
            PredictionType = prediction,
        };
        config.Validate();
        return config;
    }

    // ---- UNet ----

    private sealed record UnetLevel(int Channels, bool Attention, int TransformerDepth, int Resnets);

    private static UNetConfig InferUnet(Header h, SdVersion version, LdmOriginalConfig? original, string prediction)
    {
        const string U = LdmKeyMap.UnetPrefix;
        var convIn = h.Shape(U + "input_blocks.0.0.weight", "the UNet's conv_in");
        int modelChannels = (int)convIn[0], inChannels = (int)convIn[1];
        int outChannels = (int)h.Shape(U + "out.2.weight", "the UNet's conv_out")[0];

        var time = h.Shape(U + "time_embed.0.weight", "the UNet's time embedding");
        if (time[1] != modelChannels || time[0] != 4 * modelChannels)
            throw h.Mismatch($"'{U}time_embed.0.weight' has shape [{string.Join(", ", time)}], expected [{4 * modelChannels}, {modelChannels}] (LDM's timestep embedding is 4 × model_channels wide)");

        var levels = InputLevels(h, U);
        int layers = levels[0].Resnets;
        foreach (var level in levels)
            if (level.Resnets != layers)
                throw h.Mismatch($"the UNet levels have {string.Join(", ", levels.Select(l => l.Resnets))} resnets; cdiff reads LDM files with the same num_res_blocks at every level");

        string midAttention = U + "middle_block.1.";
        h.Shape(U + "middle_block.0.in_layers.2.weight", "the UNet's middle block");
        h.Shape(U + "middle_block.2.in_layers.2.weight", "the UNet's middle block");
        var projIn = h.Shape(midAttention + "proj_in.weight", "the UNet's middle-block attention");
        bool linearProjection = projIn.Length == 2; // SD 2: Linear [C, C]; SD 1: 1×1 conv [C, C, 1, 1]
        int context = (int)h.Shape(midAttention + "transformer_blocks.0.attn2.to_k.weight", "the middle block's cross-attention")[1];

        var upTypes = OutputLevelTypes(h, U, levels.Count, layers);
        int[] channels = levels.Select(l => l.Channels).ToArray();
        var depths = levels.Where(l => l.Attention).Select(l => l.TransformerDepth).Append(TransformerDepth(h, midAttention)).Distinct().ToArray();
        PerBlock transformerLayers = depths.Length == 1
            ? depths[0]
            : new PerBlock(levels.Select(l => l.Attention ? l.TransformerDepth : 1));

        var config = new UNetConfig
        {
            Source = $"{h.Source} (UNet inferred from the weights)",
            SampleSize = original?.ImageSize ?? (version == SdVersion.Sd2 && prediction == "v_prediction" ? 96 : 64),
            InChannels = inChannels,
            OutChannels = outChannels,
            DownBlockTypes = levels.Select(l => l.Attention ? UNetConfig.CrossAttnDownBlock : UNetConfig.DownBlock).ToArray(),
            UpBlockTypes = upTypes,
            BlockOutChannels = channels,
            LayersPerBlock = layers,
            CrossAttentionDim = context,
            AttentionHeadDim = Heads(h, version, original, channels),
            UseLinearProjection = linearProjection,
            TransformerLayersPerBlock = transformerLayers,
            // diffusers' from_single_file configures every SD 2.x file like stable-diffusion-2-1 (upcast on); in
            // float32 it changes nothing.
            UpcastAttention = version == SdVersion.Sd2,
        };
        config.Validate();
        if (original is not null) CheckUnetAgainstYaml(config, original, h.Source, modelChannels);
        return config;
    }

    /// Walks input_blocks 1..N: resnets (with an attention at `.1` in cross-attention levels) until a downsampler
    /// (`.0.op`) closes the level; the last level has none.
    private static List<UnetLevel> InputLevels(Header h, string U)
    {
        int last = h.MaxIndex(U + "input_blocks.");
        var levels = new List<UnetLevel>();
        var resnets = new List<(int Channels, bool Attention, int Depth)>();
        void Close(int index)
        {
            if (resnets.Count == 0) throw h.Mismatch($"'{U}input_blocks.{index}' closes a UNet level that has no resnet");
            if (resnets.Select(r => r.Channels).Distinct().Count() > 1 || resnets.Select(r => r.Attention).Distinct().Count() > 1)
                throw h.Mismatch($"the UNet level ending at '{U}input_blocks.{index}' mixes widths or attention between its resnets");
            levels.Add(new UnetLevel(resnets[0].Channels, resnets[0].Attention, resnets[0].Depth, resnets.Count));
            resnets.Clear();
        }
        for (int i = 1; i <= last; i++)
        {
            string block = $"{U}input_blocks.{i}.";
            if (h.Has(block + "0.op.weight")) { Close(i); continue; }
            if (!h.Has(block + "0.in_layers.2.weight"))
                throw h.Mismatch($"'{block}*' is neither a resnet (0.in_layers.*) nor a downsampler (0.op.*)");
            int channels = (int)h.Shape(block + "0.in_layers.2.weight", "a UNet resnet")[0];
            bool attention = h.Has(block + "1.proj_in.weight");
            resnets.Add((channels, attention, attention ? TransformerDepth(h, block + "1.") : 0));
        }
        Close(last);
        return levels;
    }

    private static int TransformerDepth(Header h, string attention)
    {
        int max = h.MaxIndex(attention + "transformer_blocks.");
        if (max < 0) throw h.Mismatch($"'{attention}proj_in.weight' has no '{attention}transformer_blocks.*'");
        return max + 1;
    }

    /// Up block types from output_blocks: (layers + 1) per level, cross-attention when the level's first entry has one.
    private static string[] OutputLevelTypes(Header h, string U, int levels, int layers)
    {
        int expected = levels * (layers + 1);
        int count = h.MaxIndex(U + "output_blocks.") + 1;
        if (count != expected)
            throw h.Mismatch($"the UNet has {count} output_blocks, expected {expected} ({levels} levels × {layers + 1}) to mirror its input_blocks");
        var types = new string[levels];
        for (int b = 0; b < levels; b++)
        {
            var attention = Enumerable.Range(b * (layers + 1), layers + 1).Select(i => h.Has($"{U}output_blocks.{i}.1.proj_in.weight")).Distinct().ToList();
            if (attention.Count > 1) throw h.Mismatch($"UNet up level {b} mixes resnets with and without attention");
            types[b] = attention[0] ? UNetConfig.CrossAttnUpBlock : UNetConfig.UpBlock;
        }
        return types;
    }

    /// Heads per block in diffusers' `attention_head_dim` form. The weights do not fix the head count; the yaml does
    /// (num_heads, or num_head_channels), else the convention of the generation (SD 1: 8 heads, SD 2: 64 channels).
    private static PerBlock Heads(Header h, SdVersion version, LdmOriginalConfig? original, int[] channels)
    {
        if (original?.NumHeads is { } heads) return SameHeadsEverywhere(h, heads, channels, $"{heads} heads (num_heads in {original.Source})");
        int? headChannels = original?.NumHeadChannels ?? (version == SdVersion.Sd2 ? 64 : null);
        if (headChannels is { } hc)
        {
            if (channels.Any(c => c % hc != 0))
                throw h.Mismatch($"UNet widths [{string.Join(", ", channels)}] are not multiples of {hc}-channel heads ({(original?.NumHeadChannels is null ? "the SD 2 convention" : "num_head_channels in " + original.Source)}); pass --original-config with the model's num_heads or num_head_channels");
            return new PerBlock(channels.Select(c => c / hc));
        }
        return SameHeadsEverywhere(h, 8, channels, "8 heads (the SD 1 convention)");
    }

    /// One head count for every block (diffusers' single-number `attention_head_dim`), which must divide every width.
    private static PerBlock SameHeadsEverywhere(Header h, int heads, int[] channels, string what)
    {
        foreach (var c in channels)
            if (heads <= 0 || c % heads != 0)
                throw h.Mismatch($"UNet width {c} cannot be split into {what}; pass --original-config with the model's num_heads or num_head_channels");
        return heads;
    }

    private static void CheckUnetAgainstYaml(UNetConfig config, LdmOriginalConfig y, string source, int modelChannels)
    {
        void Check(string key, object? yaml, object actual)
        {
            if (yaml is null) return;
            string Show(object v) => v is int[] a ? "[" + string.Join(", ", a) + "]" : Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture)!.ToLowerInvariant();
            if (Show(yaml) != Show(actual))
                throw new ConfigException($"{y.Source}: key '{LdmOriginalConfig.UnetParams}.{key}' = {Show(yaml)} does not match the weights of {source} ({Show(actual)})");
        }
        Check("in_channels", y.UnetInChannels, config.InChannels);
        Check("out_channels", y.UnetOutChannels, config.OutChannels);
        Check("model_channels", y.ModelChannels, modelChannels);
        if (y.ModelChannels is { } mc) Check("channel_mult", y.ChannelMult?.Select(m => m * mc).ToArray(), config.BlockOutChannels);
        Check("num_res_blocks", y.NumResBlocks, config.LayersPerBlockList()[0]);
        Check("context_dim", y.ContextDim, config.CrossAttentionDims()[0]);
        Check("use_linear_in_transformer", y.UseLinearInTransformer, config.UseLinearProjection);
        if (y.TransformerDepth is { Length: 1 } depth) Check("transformer_depth", depth[0], config.TransformerLayers()[0]);
        else Check("transformer_depth", y.TransformerDepth, config.TransformerLayers());
    }

    // ---- VAE ----

    private static VaeConfig InferVae(Header h, LdmOriginalConfig? original)
    {
        const string V = LdmKeyMap.VaePrefix;
        var convIn = h.Shape(V + "encoder.conv_in.weight", "the VAE encoder's conv_in");
        int levels = h.MaxIndex(V + "encoder.down.") + 1;
        if (levels <= 0) throw h.Mismatch($"no '{V}encoder.down.*' keys");
        int layers = h.MaxIndex(V + "encoder.down.0.block.") + 1;
        var channels = new int[levels];
        for (int i = 0; i < levels; i++)
        {
            if (h.MaxIndex($"{V}encoder.down.{i}.block.") + 1 != layers)
                throw h.Mismatch($"VAE encoder level {i} has {h.MaxIndex($"{V}encoder.down.{i}.block.") + 1} resnets, level 0 has {layers}");
            if (h.Has($"{V}encoder.down.{i}.attn.0.q.weight"))
                throw h.Mismatch($"the VAE has attention in encoder level {i} (attn_resolutions); cdiff's AutoencoderKL has attention in the middle block only");
            channels[i] = (int)h.Shape($"{V}encoder.down.{i}.block.0.conv2.weight", "a VAE resnet")[0];
        }
        if (h.MaxIndex(V + "decoder.up.") + 1 != levels)
            throw h.Mismatch($"the VAE decoder has {h.MaxIndex(V + "decoder.up.") + 1} levels, the encoder {levels}");
        int latent = (int)h.Shape(V + "post_quant_conv.weight", "the VAE's post_quant_conv")[0];
        int z = (int)h.Shape(V + "decoder.conv_in.weight", "the VAE decoder's conv_in")[1];
        if (z != latent) throw h.Mismatch($"the VAE's embed_dim ({latent}) differs from its z_channels ({z}); diffusers' AutoencoderKL has one latent width");

        var config = new VaeConfig
        {
            Source = $"{h.Source} (VAE inferred from the weights)",
            InChannels = (int)convIn[1],
            OutChannels = (int)h.Shape(V + "decoder.conv_out.weight", "the VAE decoder's conv_out")[0],
            DownBlockTypes = Enumerable.Repeat(VaeConfig.DownEncoderBlock, levels).ToArray(),
            UpBlockTypes = Enumerable.Repeat(VaeConfig.UpDecoderBlock, levels).ToArray(),
            BlockOutChannels = channels,
            LayersPerBlock = layers,
            LatentChannels = latent,
            ScalingFactor = original?.ScaleFactor ?? DefaultScaleFactor,
        };
        config.Validate();
        if (original is not null)
        {
            void Check(string key, object? yaml, object actual)
            {
                string Show(object v) => v is int[] a ? "[" + string.Join(", ", a) + "]" : v.ToString()!;
                if (yaml is not null && Show(yaml) != Show(actual))
                    throw new ConfigException($"{original.Source}: key '{LdmOriginalConfig.DdConfig}.{key}' = {Show(yaml)} does not match the weights of {h.Source} ({Show(actual)})");
            }
            Check("ch", original.VaeCh, (int)convIn[0]);
            if (original.VaeCh is { } ch) Check("ch_mult", original.VaeChMult?.Select(m => m * ch).ToArray(), channels);
            Check("num_res_blocks", original.VaeNumResBlocks, layers);
            Check("z_channels", original.VaeZChannels, z);
        }
        return config;
    }

    // ---- text encoder ----

    /// The text encoder's config and the number of encoder layers the file holds. CLIP's attention heads are not in
    /// the shapes: every released CLIP text tower uses 64-wide heads (ViT-L/14: 768 = 12 × 64, ViT-H/14: 1024 =
    /// 16 × 64); narrower encoders are test models, which in diffusers' tiny configs and cdiff's own architectures
    /// (configs/models/tiny.json, fashion.json) use 8-wide heads.
    internal static (ClipTextConfig Config, int LayersInFile) InferTextEncoder(IReadOnlyDictionary<string, SafeTensorInfo> tensors,
        string source, SdVersion version, LdmOriginalConfig? original)
    {
        var h = new Header(tensors, source);
        string token, position, layerPrefix, fc1;
        if (version == SdVersion.Sd1)
        {
            string b = LdmKeyMap.ClipPrefix + (h.HasPrefix(LdmKeyMap.ClipPrefix + "text_model.") ? "text_model." : "");
            (token, position, layerPrefix, fc1) = (b + "embeddings.token_embedding.weight", b + "embeddings.position_embedding.weight", b + "encoder.layers.", "mlp.fc1.weight");
        }
        else
        {
            string b = LdmKeyMap.OpenClipPrefix;
            (token, position, layerPrefix, fc1) = (b + "token_embedding.weight", b + "positional_embedding", b + "transformer.resblocks.", "mlp.c_fc.weight");
        }
        var tokenShape = h.Shape(token, "the text encoder's token embedding");
        int vocab = (int)tokenShape[0], hidden = (int)tokenShape[1];
        var positionShape = h.Shape(position, "the text encoder's position embedding");
        if (positionShape.Length != 2 || positionShape[1] != hidden)
            throw h.Mismatch($"'{position}' has shape [{string.Join(", ", positionShape)}], expected [positions, {hidden}]");
        int fileLayers = h.MaxIndex(layerPrefix) + 1;
        if (fileLayers <= 0) throw h.Mismatch($"no '{layerPrefix}*' keys (the text encoder's layers)");
        for (int i = 0; i < fileLayers; i++)
            if (!h.HasPrefix($"{layerPrefix}{i}.")) throw h.Mismatch($"text encoder layer {i} is missing ('{layerPrefix}{i}.*') below layer {fileLayers - 1}");
        int intermediate = (int)h.Shape($"{layerPrefix}0.{fc1}", "the text encoder's MLP")[0];

        // SD 2 conditions on the penultimate OpenCLIP layer (FrozenOpenCLIPEmbedder layer="penultimate"; diffusers'
        // stable-diffusion-2 text_encoder has num_hidden_layers 23 of the 24 blocks and applies final_layer_norm).
        bool penultimate = version == SdVersion.Sd2 && original?.OpenClipLayer != "last";
        int layers = penultimate ? fileLayers - 1 : fileLayers;
        if (layers <= 0) throw h.Mismatch($"the OpenCLIP text encoder has {fileLayers} block(s); SD 2 reads the penultimate one, so at least 2 are needed");

        int heads = hidden % 64 == 0 ? hidden / 64
            : hidden < 64 && hidden % 8 == 0 ? hidden / 8
            : throw h.Mismatch($"cannot infer the text encoder's attention heads for width {hidden} (CLIP uses 64-wide heads)");

        var config = new ClipTextConfig
        {
            Architectures = ["CLIPTextModel"],
            HiddenAct = version == SdVersion.Sd2 ? "gelu" : "quick_gelu",
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumAttentionHeads = heads,
            NumHiddenLayers = layers,
            MaxPositionEmbeddings = (int)positionShape[0],
            VocabSize = vocab,
            ProjectionDim = hidden,
            // transformers' legacy ids in every SD 1.x/2.x text_encoder config: eos_token_id 2 selects pooling at argmax(ids).
            BosTokenId = 0,
            EosTokenId = 2,
            PadTokenId = 1,
            LayerNormEps = 1e-5,
        };
        config.Validate($"{source} (text encoder inferred from the weights)");
        return (config, fileLayers);
    }

    /// Names and shapes of a safetensors header, with errors that name the file.
    private sealed class Header(IReadOnlyDictionary<string, SafeTensorInfo> tensors, string source)
    {
        public string Source => source;

        public bool Has(string key) => tensors.ContainsKey(key);

        public bool HasPrefix(string prefix) => tensors.Keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));

        public long[] Shape(string key, string what) =>
            tensors.TryGetValue(key, out var info) ? info.Shape : throw Mismatch($"missing '{key}' ({what})");

        /// The largest N of keys `prefix` + "N." + ..., or -1.
        public int MaxIndex(string prefix)
        {
            int max = -1;
            foreach (var key in tensors.Keys)
                if (LdmKeyMap.Index(key, prefix) is { } index) max = Math.Max(max, index.Number);
            return max;
        }

        public CheckpointMismatchException Mismatch(string what) => new($"{source}: {what}");
    }
}
