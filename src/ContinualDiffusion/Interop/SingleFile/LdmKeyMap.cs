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
/// The same rules, over the same name tables, also run backwards (`LdmKey`, as diffusers'
/// scripts/convert_diffusers_to_original_stable_diffusion.py renames) for LdmSingleFileWriter, which checks every key it
/// makes against the forward rule (`Target`): this file is the one place the correspondence is defined.
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
            var target = Target(key, layout);
            if (target.Ignored) { ignored.Add(key); continue; }
            if (target.Component is not { } c) { unknown.Add(key); continue; }
            var component = c switch { SdComponent.Unet => unet, SdComponent.Vae => vae, _ => text };
            foreach (var (name, conversion) in target.Names)
            {
                if (component.TryGetValue(name, out var previous))
                    throw new CheckpointMismatchException($"{file}: keys '{previous.SourceKey}' and '{key}' both map to '{name}'");
                component[name] = MappedTensor.Create(info, conversion, file);
            }
        }
        return new LdmMapping(unet, vae, text, ignored, unknown);
    }

    /// Where one LDM key goes: the diffusers tensor(s) of one component it gives (one; or q, k and v for OpenCLIP's
    /// fused projection), deliberately not read (`Ignored`), or nowhere (no component: a key no rule maps).
    public sealed record KeyTarget(SdComponent? Component, IReadOnlyList<(string Name, TensorConversion Conversion)> Names, bool Ignored)
    {
        public static readonly KeyTarget Unknown = new(null, [], false);
        public static readonly KeyTarget NotRead = new(null, [], true);
        public static KeyTarget One(SdComponent component, string? name, TensorConversion conversion = TensorConversion.Copy) =>
            name is null ? Unknown : new(component, [(name, conversion)], false);
    }

    /// The rule for one LDM key (Map applies it to every key of a header; the single-file writer checks each key it
    /// makes against it).
    public static KeyTarget Target(string key, LdmLayout layout)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(layout);
        if (key.StartsWith(UnetPrefix, StringComparison.Ordinal))
            return KeyTarget.One(SdComponent.Unet, UnetKey(key[UnetPrefix.Length..], layout.UnetLayersPerBlock));
        if (key.StartsWith(VaePrefix, StringComparison.Ordinal))
        {
            var (name, conversion) = VaeKey(key[VaePrefix.Length..], layout.VaeBlocks);
            return KeyTarget.One(SdComponent.Vae, name, conversion);
        }
        if (key.StartsWith(ClipPrefix, StringComparison.Ordinal))
        {
            var name = ClipKey(key[ClipPrefix.Length..]);
            return name == Ignore ? KeyTarget.NotRead : KeyTarget.One(SdComponent.TextEncoder, name);
        }
        if (key.StartsWith(OpenClipPrefix, StringComparison.Ordinal))
        {
            var rest = key[OpenClipPrefix.Length..];
            if (IsInProjection(rest, out var layerPrefix, out var suffix))
            {
                if (LayerIndex(rest) >= layout.TextEncoderLayers) return KeyTarget.NotRead;
                return new KeyTarget(SdComponent.TextEncoder,
                [
                    ($"{layerPrefix}.self_attn.q_proj.{suffix}", TensorConversion.QueryRows),
                    ($"{layerPrefix}.self_attn.k_proj.{suffix}", TensorConversion.KeyRows),
                    ($"{layerPrefix}.self_attn.v_proj.{suffix}", TensorConversion.ValueRows),
                ], false);
            }
            var name = OpenClipKey(rest, layout.TextEncoderLayers);
            return name == Ignore ? KeyTarget.NotRead : KeyTarget.One(SdComponent.TextEncoder, name);
        }
        if (key.StartsWith("cond_stage_model.", StringComparison.Ordinal)) return KeyTarget.Unknown;
        return KeyTarget.NotRead; // not a network weight: DDPM buffers (ScheduleBuffers), `model_ema.*` copies, training state
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
        foreach (var (ldm, diffusers) in UnetFixedNames)
            if (Strip(rest, ldm) is { } tail) return diffusers + tail;

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

    /// The UNet modules outside the numbered blocks: the timestep MLP (Sequential Linear, SiLU, Linear), conv_in
    /// (input_blocks.0), and the output head (Sequential GroupNorm, SiLU, Conv).
    private static readonly (string Ldm, string Diffusers)[] UnetFixedNames =
    [
        ("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
    ];

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

    // ---- the reverse: diffusers names -> LDM keys (writing a single file) ----

    /// The full LDM key the diffusers tensor `name` of `component` is written under: the rules above run backwards
    /// over the same name tables. OpenCLIP (`openClip`, SD 2.x) gives a layer's q_proj, k_proj and v_proj the one
    /// fused in_proj key. `upBlockHasAttention(b)`: whether UNet up block b has attentions (its upsampler is then the
    /// level's third module, `.2.conv`, else its second). Null when no rule applies. These rules are not trusted on
    /// their own: the writer maps every key it makes forward again with `Target` and requires the name it started from.
    public static string? LdmKey(SdComponent component, string name, LdmLayout layout, bool openClip, Func<int, bool> upBlockHasAttention)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(upBlockHasAttention);
        return component switch
        {
            SdComponent.Unet => UnetLdmKey(name, layout.UnetLayersPerBlock, upBlockHasAttention) is { } u ? UnetPrefix + u : null,
            SdComponent.Vae => VaeLdmKey(name, layout.VaeBlocks) is { } v ? VaePrefix + v : null,
            SdComponent.TextEncoder when openClip => OpenClipLdmKey(name) is { } o ? OpenClipPrefix + o : null,
            SdComponent.TextEncoder => name.StartsWith("text_model.", StringComparison.Ordinal) ? ClipPrefix + name : null,
            _ => null,
        };
    }

    /// UNet2DConditionModel -> openaimodel.UNetModel (without `model.diffusion_model.`).
    internal static string? UnetLdmKey(string name, int layersPerBlock, Func<int, bool> upBlockHasAttention)
    {
        foreach (var (ldm, diffusers) in UnetFixedNames)
            if (Strip(name, diffusers) is { } tail) return ldm + tail;

        int perLevel = layersPerBlock + 1;
        if (Index(name, "down_blocks.") is { } down)
        {
            int first = 1 + down.Number * perLevel; // input_blocks.0 is conv_in
            if (Index(down.Tail, "resnets.") is { } r) return ResnetLdm(r.Tail) is { } t ? $"input_blocks.{first + r.Number}.0.{t}" : null;
            if (Index(down.Tail, "attentions.") is { } a) return $"input_blocks.{first + a.Number}.1.{a.Tail}";
            if (Strip(down.Tail, "downsamplers.0.conv.") is { } op) return $"input_blocks.{first + layersPerBlock}.0.op.{op}";
            return null;
        }
        if (Strip(name, "mid_block.") is { } mid)
        {
            if (Strip(mid, "resnets.0.") is { } r0) return ResnetLdm(r0) is { } t0 ? "middle_block.0." + t0 : null;
            if (Strip(mid, "attentions.0.") is { } a) return "middle_block.1." + a;
            if (Strip(mid, "resnets.1.") is { } r1) return ResnetLdm(r1) is { } t1 ? "middle_block.2." + t1 : null;
            return null;
        }
        if (Index(name, "up_blocks.") is { } up)
        {
            int first = up.Number * perLevel;
            if (Index(up.Tail, "resnets.") is { } r) return ResnetLdm(r.Tail) is { } t ? $"output_blocks.{first + r.Number}.0.{t}" : null;
            if (Index(up.Tail, "attentions.") is { } a) return $"output_blocks.{first + a.Number}.1.{a.Tail}";
            if (Strip(up.Tail, "upsamplers.0.conv.") is { } c)
                return $"output_blocks.{first + layersPerBlock}.{(upBlockHasAttention(up.Number) ? 2 : 1)}.conv.{c}";
        }
        return null;
    }

    private static string? ResnetLdm(string tail)
    {
        foreach (var (ldm, diffusers) in ResnetNames)
            if (Strip(tail, diffusers) is { } t) return ldm + t;
        return null;
    }

    /// diffusers AutoencoderKL -> LDM's (without `first_stage_model.`).
    internal static string? VaeLdmKey(string name, int blocks)
    {
        if (name.StartsWith("quant_conv.", StringComparison.Ordinal) || name.StartsWith("post_quant_conv.", StringComparison.Ordinal)) return name;
        string? part = name.StartsWith("encoder.", StringComparison.Ordinal) ? "encoder"
            : name.StartsWith("decoder.", StringComparison.Ordinal) ? "decoder" : null;
        if (part is null) return null;
        var sub = name[(part.Length + 1)..];

        if (sub.StartsWith("conv_in.", StringComparison.Ordinal) || sub.StartsWith("conv_out.", StringComparison.Ordinal)) return name;
        if (Strip(sub, "conv_norm_out.") is { } norm) return $"{part}.norm_out.{norm}";
        if (Strip(sub, "mid_block.resnets.0.") is { } r0) return VaeResnetLdm(r0) is { } t0 ? $"{part}.mid.block_1.{t0}" : null;
        if (Strip(sub, "mid_block.resnets.1.") is { } r1) return VaeResnetLdm(r1) is { } t1 ? $"{part}.mid.block_2.{t1}" : null;
        if (Strip(sub, "mid_block.attentions.0.") is { } attn)
        {
            foreach (var (ldm, diffusers) in VaeAttentionNames)
                if (Strip(attn, diffusers) is { } param) return $"{part}.mid.attn_1.{ldm}{param}";
            return null;
        }
        if (part == "encoder" && Index(sub, "down_blocks.") is { } down)
        {
            if (Index(down.Tail, "resnets.") is { } res)
                return VaeResnetLdm(res.Tail) is { } r ? $"encoder.down.{down.Number}.block.{res.Number}.{r}" : null;
            if (Strip(down.Tail, "downsamplers.0.conv.") is { } ds) return $"encoder.down.{down.Number}.downsample.conv.{ds}";
            return null;
        }
        if (part == "decoder" && Index(sub, "up_blocks.") is { } up && up.Number < blocks)
        {
            int level = blocks - 1 - up.Number;
            if (Index(up.Tail, "resnets.") is { } res)
                return VaeResnetLdm(res.Tail) is { } r ? $"decoder.up.{level}.block.{res.Number}.{r}" : null;
            if (Strip(up.Tail, "upsamplers.0.conv.") is { } us) return $"decoder.up.{level}.upsample.conv.{us}";
        }
        return null;
    }

    private static string? VaeResnetLdm(string tail)
    {
        if (Strip(tail, "conv_shortcut.") is { } s) return "nin_shortcut." + s;
        return VaeResnetNames.Any(n => tail.StartsWith(n, StringComparison.Ordinal)) ? tail : null;
    }

    /// transformers CLIPTextModel -> OpenCLIP's text tower (without `cond_stage_model.model.`), as diffusers'
    /// convert_diffusers_to_original_stable_diffusion.py (convert_text_enc_state_dict_v20) names it.
    internal static string? OpenClipLdmKey(string name)
    {
        switch (name)
        {
            case "text_model.embeddings.token_embedding.weight": return "token_embedding.weight";
            case "text_model.embeddings.position_embedding.weight": return "positional_embedding";
        }
        if (Strip(name, "text_model.final_layer_norm.") is { } ln) return "ln_final." + ln;
        if (Index(name, "text_model.encoder.layers.") is not { } layer) return null;
        string block = $"transformer.resblocks.{layer.Number}.";
        foreach (var p in new[] { "q_proj.", "k_proj.", "v_proj." })
            if (Strip(layer.Tail, "self_attn." + p) is { } param && param is "weight" or "bias") return $"{block}attn.in_proj_{param}";
        foreach (var (openClip, transformers) in OpenClipLayerNames)
            if (Strip(layer.Tail, transformers) is { } param) return block + openClip + param;
        return null;
    }

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
