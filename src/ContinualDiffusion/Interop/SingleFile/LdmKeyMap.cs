using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Interop.SingleFile;

/// What the renaming needs to know about the architecture (inferred by LdmArchitecture from the same header).
/// <param name="UnetLayersPerBlock">Resnets per UNet down block: LDM numbers input_blocks and output_blocks
/// consecutively, (layers + 1) per level.</param>
/// <param name="VaeBlocks">VAE resolution levels: LDM numbers the decoder's `up.N` from the lowest resolution's
/// opposite end, diffusers' `up_blocks.N` in execution order.</param>
/// <param name="TextEncoderLayers">Encoder layers the text encoder keeps. For OpenCLIP (SD 2.x) resblocks from this
/// index on are not read: SD 2 conditions on the penultimate layer, so diffusers' text encoder has one layer less.</param>
public sealed record LdmLayout(int UnetLayersPerBlock, int VaeBlocks, int TextEncoderLayers);

/// Original-LDM (CompVis / Stability `.ckpt` layout, as A1111 and ComfyUI keep single `.safetensors` files) to diffusers
/// key renaming, rule for rule as diffusers' `loaders/single_file_utils.py` (convert_ldm_unet_checkpoint,
/// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint) and kohya's
/// `library/model_util.py` do it. Only names and shapes are used: the header is mapped before any tensor is read.
public static class LdmKeyMap
{
    public const string UnetPrefix = "model.diffusion_model.";
    public const string VaePrefix = "first_stage_model.";
    /// SD 1.x: a transformers CLIPTextModel under this prefix, with or without its `text_model.` level.
    public const string ClipPrefix = "cond_stage_model.transformer.";
    /// SD 2.x: an OpenCLIP text tower (ViT-H/14) under this prefix.
    public const string OpenClipPrefix = "cond_stage_model.model.";

    /// LDM's LatentDiffusion saves its DDPM schedule as buffers next to the networks; cdiff computes the schedule.
    private static readonly HashSet<string> ScheduleBuffers = new(StringComparer.Ordinal)
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar",
    };

    public static LdmMapping Map(IReadOnlyDictionary<string, SafeTensorInfo> tensors, LdmLayout layout, string file)
    {
        var unet = new Dictionary<string, MappedTensor>(StringComparer.Ordinal);
        var vae = new Dictionary<string, MappedTensor>(StringComparer.Ordinal);
        var text = new Dictionary<string, MappedTensor>(StringComparer.Ordinal);
        var ignored = new List<string>();
        var unknown = new List<string>();

        foreach (var (key, info) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            if (key.StartsWith(UnetPrefix, StringComparison.Ordinal))
                Add(unet, UnetKey(key[UnetPrefix.Length..], layout.UnetLayersPerBlock), TensorConversion.Copy);
            else if (key.StartsWith(VaePrefix, StringComparison.Ordinal))
            {
                var (name, conversion) = VaeKey(key[VaePrefix.Length..], layout.VaeBlocks);
                Add(vae, name, conversion);
            }
            else if (key.StartsWith(ClipPrefix, StringComparison.Ordinal))
            {
                var name = ClipKey(key[ClipPrefix.Length..]);
                if (name == Ignore) ignored.Add(key);
                else Add(text, name, TensorConversion.Copy);
            }
            else if (key.StartsWith(OpenClipPrefix, StringComparison.Ordinal))
            {
                var rest = key[OpenClipPrefix.Length..];
                if (IsInProjection(rest, out var layerPrefix, out var suffix))
                {
                    if (LayerIndex(rest) >= layout.TextEncoderLayers) { ignored.Add(key); continue; }
                    Add(text, $"{layerPrefix}.self_attn.q_proj.{suffix}", TensorConversion.QueryRows);
                    Add(text, $"{layerPrefix}.self_attn.k_proj.{suffix}", TensorConversion.KeyRows);
                    Add(text, $"{layerPrefix}.self_attn.v_proj.{suffix}", TensorConversion.ValueRows);
                    continue;
                }
                var name = OpenClipKey(rest, layout.TextEncoderLayers);
                if (name == Ignore) ignored.Add(key);
                else Add(text, name, TensorConversion.Copy);
            }
            else if (key.StartsWith("cond_stage_model.", StringComparison.Ordinal))
                unknown.Add(key);
            else
                ignored.Add(key); // not a network weight: DDPM buffers (ScheduleBuffers), `model_ema.*` copies, training state

            void Add(Dictionary<string, MappedTensor> component, string? name, TensorConversion conversion)
            {
                if (name is null) { unknown.Add(key); return; }
                if (component.TryGetValue(name, out var previous))
                    throw new CheckpointMismatchException($"{file}: keys '{previous.SourceKey}' and '{key}' both map to '{name}'");
                component[name] = MappedTensor.Create(info, conversion, file);
            }
        }
        return new LdmMapping(unet, vae, text, ignored, unknown);
    }

    /// True for the keys LDM's LatentDiffusion stores that are not weights (its noise schedule).
    public static bool IsScheduleBuffer(string key) => ScheduleBuffers.Contains(key);

    /// What the text-encoder rules return for a key that is deliberately not read (distinct from null, "no rule";
    /// it starts with NUL, so no checkpoint key can equal it).
    private const string Ignore = "\0ignore";

    // ---- UNet (openaimodel.UNetModel -> UNet2DConditionModel) ----

    /// `rest` is the key without `model.diffusion_model.`; null when no rule applies.
    internal static string? UnetKey(string rest, int layersPerBlock)
    {
        if (Strip(rest, "time_embed.0.") is { } t0) return "time_embedding.linear_1." + t0;
        if (Strip(rest, "time_embed.2.") is { } t2) return "time_embedding.linear_2." + t2;
        if (Strip(rest, "input_blocks.0.0.") is { } ci) return "conv_in." + ci;
        if (Strip(rest, "out.0.") is { } no) return "conv_norm_out." + no;
        if (Strip(rest, "out.2.") is { } co) return "conv_out." + co;

        int perLevel = layersPerBlock + 1; // the resnets of a level, then its downsampler (input) or its extra resnet (output)
        if (Index(rest, "input_blocks.") is { } input && input.Number >= 1 && Index(input.Tail, "") is { } inner)
        {
            int block = (input.Number - 1) / perLevel, layer = (input.Number - 1) % perLevel;
            var tail = inner.Tail;
            if (inner.Number == 0 && Strip(tail, "op.") is { } op) return $"down_blocks.{block}.downsamplers.0.conv.{op}";
            if (inner.Number == 0) return Resnet(tail) is { } r ? $"down_blocks.{block}.resnets.{layer}.{r}" : null;
            if (inner.Number == 1) return $"down_blocks.{block}.attentions.{layer}.{tail}";
            return null;
        }
        if (Index(rest, "middle_block.") is { } mid)
        {
            return mid.Number switch
            {
                0 => Resnet(mid.Tail) is { } r0 ? "mid_block.resnets.0." + r0 : null,
                1 => "mid_block.attentions.0." + mid.Tail,
                2 => Resnet(mid.Tail) is { } r1 ? "mid_block.resnets.1." + r1 : null,
                _ => null,
            };
        }
        if (Index(rest, "output_blocks.") is { } output && Index(output.Tail, "") is { } outInner)
        {
            int block = output.Number / perLevel, layer = output.Number % perLevel;
            var tail = outInner.Tail;
            if (outInner.Number == 0) return Resnet(tail) is { } r ? $"up_blocks.{block}.resnets.{layer}.{r}" : null;
            // The upsampler is the level's last module: `.1.conv` without attention, `.2.conv` with it.
            if (outInner.Number is 1 or 2 && Strip(tail, "conv.") is { } up) return $"up_blocks.{block}.upsamplers.0.conv.{up}";
            if (outInner.Number == 1) return $"up_blocks.{block}.attentions.{layer}.{tail}";
            return null;
        }
        return null;
    }

    /// openaimodel.ResBlock -> diffusers ResnetBlock2D. The Sequential indices skip the activations (in_layers:
    /// GroupNorm, SiLU, Conv; out_layers: GroupNorm, SiLU, Dropout, Conv; emb_layers: SiLU, Linear).
    private static string? Resnet(string tail)
    {
        foreach (var (ldm, diffusers) in ResnetNames)
            if (Strip(tail, ldm) is { } t) return diffusers + t;
        return null;
    }

    private static readonly (string Ldm, string Diffusers)[] ResnetNames =
    [
        ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."),
        ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut."),
    ];

    // ---- VAE (ldm.models.autoencoder.AutoencoderKL -> diffusers AutoencoderKL) ----

    /// `rest` is the key without `first_stage_model.`; a null name when no rule applies.
    internal static (string? Name, TensorConversion Conversion) VaeKey(string rest, int blocks)
    {
        if (rest.StartsWith("quant_conv.", StringComparison.Ordinal) || rest.StartsWith("post_quant_conv.", StringComparison.Ordinal))
            return (rest, TensorConversion.Copy);
        string? part = rest.StartsWith("encoder.", StringComparison.Ordinal) ? "encoder"
            : rest.StartsWith("decoder.", StringComparison.Ordinal) ? "decoder" : null;
        if (part is null) return (null, TensorConversion.Copy);
        var sub = rest[(part.Length + 1)..];

        if (sub.StartsWith("conv_in.", StringComparison.Ordinal) || sub.StartsWith("conv_out.", StringComparison.Ordinal))
            return ($"{part}.{sub}", TensorConversion.Copy);
        if (Strip(sub, "norm_out.") is { } norm) return ($"{part}.conv_norm_out.{norm}", TensorConversion.Copy);
        if (Strip(sub, "mid.block_1.") is { } b1) return (VaeResnet(b1) is { } r1 ? $"{part}.mid_block.resnets.0.{r1}" : null, TensorConversion.Copy);
        if (Strip(sub, "mid.block_2.") is { } b2) return (VaeResnet(b2) is { } r2 ? $"{part}.mid_block.resnets.1.{r2}" : null, TensorConversion.Copy);
        if (Strip(sub, "mid.attn_1.") is { } attn)
        {
            foreach (var (ldm, diffusers) in VaeAttentionNames)
            {
                if (Strip(attn, ldm) is not { } param) continue;
                var conversion = param == "weight" && ldm != "norm." ? TensorConversion.Conv1x1ToLinear : TensorConversion.Copy;
                return ($"{part}.mid_block.attentions.0.{diffusers}{param}", conversion);
            }
            return (null, TensorConversion.Copy);
        }

        // encoder.down.N runs in order; decoder.up.N is numbered from the output end, diffusers' up_blocks in order.
        if (part == "encoder" && Index(sub, "down.") is { } down)
        {
            if (Index(down.Tail, "block.") is { } res)
                return (VaeResnet(res.Tail) is { } r ? $"encoder.down_blocks.{down.Number}.resnets.{res.Number}.{r}" : null, TensorConversion.Copy);
            if (Strip(down.Tail, "downsample.conv.") is { } ds) return ($"encoder.down_blocks.{down.Number}.downsamplers.0.conv.{ds}", TensorConversion.Copy);
            return (null, TensorConversion.Copy);
        }
        if (part == "decoder" && Index(sub, "up.") is { } upLevel && upLevel.Number < blocks)
        {
            int block = blocks - 1 - upLevel.Number;
            if (Index(upLevel.Tail, "block.") is { } res)
                return (VaeResnet(res.Tail) is { } r ? $"decoder.up_blocks.{block}.resnets.{res.Number}.{r}" : null, TensorConversion.Copy);
            if (Strip(upLevel.Tail, "upsample.conv.") is { } us) return ($"decoder.up_blocks.{block}.upsamplers.0.conv.{us}", TensorConversion.Copy);
        }
        return (null, TensorConversion.Copy);
    }

    /// LDM's AttnBlock: GroupNorm `norm`, 1×1 convs q, k, v, proj_out -> diffusers Attention.
    private static readonly (string Ldm, string Diffusers)[] VaeAttentionNames =
    [
        ("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0."),
    ];

    private static readonly string[] VaeResnetNames = ["norm1.", "conv1.", "norm2.", "conv2."];

    /// LDM's VAE ResnetBlock has diffusers' names except for the 1×1 shortcut.
    private static string? VaeResnet(string tail)
    {
        if (Strip(tail, "nin_shortcut.") is { } s) return "conv_shortcut." + s;
        return VaeResnetNames.Any(n => tail.StartsWith(n, StringComparison.Ordinal)) ? tail : null;
    }

    // ---- Text encoders ----

    /// SD 1.x: transformers' own names under `cond_stage_model.transformer.`; files written by older transformers lack
    /// the `text_model.` level (kohya and diffusers add it back). The position_ids buffer is not a weight.
    internal static string ClipKey(string rest)
    {
        var name = rest.StartsWith("text_model.", StringComparison.Ordinal) ? rest : "text_model." + rest;
        return name.EndsWith("embeddings.position_ids", StringComparison.Ordinal) ? Ignore : name;
    }

    /// SD 2.x: OpenCLIP names under `cond_stage_model.model.` -> transformers CLIPTextModel names. The fused
    /// in_proj tensors are handled by `IsInProjection`; `text_projection` and `logit_scale` serve CLIP's image-text
    /// contrast, which SD does not use; resblocks from `keptLayers` on are not read (SD 2 uses the penultimate layer).
    internal static string? OpenClipKey(string rest, int keptLayers)
    {
        switch (rest)
        {
            case "token_embedding.weight": return "text_model.embeddings.token_embedding.weight";
            case "positional_embedding": return "text_model.embeddings.position_embedding.weight";
            case "text_projection" or "logit_scale": return Ignore;
            case "attn_mask": return Ignore; // OpenCLIP's causal mask buffer (non-persistent, but older exports saved it)
        }
        if (Strip(rest, "ln_final.") is { } ln) return "text_model.final_layer_norm." + ln;
        if (rest.EndsWith("embeddings.position_ids", StringComparison.Ordinal)) return Ignore; // waifu-diffusion 1.4 carries one (kohya)
        if (Index(rest, "transformer.resblocks.") is not { } block) return null;
        if (block.Number >= keptLayers) return Ignore;
        foreach (var (openClip, transformers) in OpenClipLayerNames)
            if (Strip(block.Tail, openClip) is { } param) return $"text_model.encoder.layers.{block.Number}.{transformers}{param}";
        return null;
    }

    private static readonly (string OpenClip, string Transformers)[] OpenClipLayerNames =
    [
        ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
        ("attn.out_proj.", "self_attn.out_proj."),
    ];

    /// `transformer.resblocks.N.attn.in_proj_weight` / `_bias`: `layerPrefix` is the transformers layer
    /// (`text_model.encoder.layers.N`), `suffix` "weight" or "bias".
    private static bool IsInProjection(string rest, out string layerPrefix, out string suffix)
    {
        layerPrefix = suffix = "";
        if (Index(rest, "transformer.resblocks.") is not { } block || block.Tail is not ("attn.in_proj_weight" or "attn.in_proj_bias")) return false;
        layerPrefix = $"text_model.encoder.layers.{block.Number}";
        suffix = block.Tail.EndsWith("weight", StringComparison.Ordinal) ? "weight" : "bias";
        return true;
    }

    private static int LayerIndex(string rest) => Index(rest, "transformer.resblocks.")!.Value.Number;

    // ---- helpers ----

    private static string? Strip(string s, string prefix) =>
        s.StartsWith(prefix, StringComparison.Ordinal) ? s[prefix.Length..] : null;

    /// For `prefix` + "N.tail" with N a decimal index: (N, tail); otherwise null.
    internal static (int Number, string Tail)? Index(string s, string prefix)
    {
        if (Strip(s, prefix) is not { } rest) return null;
        int dot = rest.IndexOf('.');
        if (dot <= 0 || !TryIndex(rest[..dot], out int number)) return null;
        return (number, rest[(dot + 1)..]);
    }

    private static bool TryIndex(string s, out int value) =>
        int.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value) && value < 100_000;
}
