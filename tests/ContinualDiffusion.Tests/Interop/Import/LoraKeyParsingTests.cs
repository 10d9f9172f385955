using ContinualDiffusion.Interop.Import;

namespace ContinualDiffusion.Tests.Interop.Import;

/// Key names and header shapes → modules, with no tensor: SD 1.5-sized module paths and shapes, the kohya and diffusers
/// key forms, and every refusal that can be decided from the keys.
public class LoraKeyParsingTests
{
    private const string F = "style.safetensors";
    private const string ToK = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k";
    private const string ToOut = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0";
    private const string ProjIn = "down_blocks.0.attentions.0.proj_in";
    private const string Conv1 = "down_blocks.0.resnets.0.conv1";
    private const string QProj = "text_model.encoder.layers.0.self_attn.q_proj";

    /// SD 1.5 shapes: cross-attention to_k [320, 768], 1×1-conv proj_in, 3×3 resnet conv, CLIP-L q_proj [768, 768].
    private static LoraTargets Sd15 => new(
        new Dictionary<string, long[]>
        {
            [ToK] = [320, 768], [ToOut] = [320, 320], [ProjIn] = [320, 320, 1, 1], [Conv1] = [320, 320, 3, 3],
            ["down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj"] = [2560, 320],
        },
        new Dictionary<string, long[]> { [QProj] = [768, 768], ["text_model.encoder.layers.0.mlp.fc1"] = [3072, 768] });

    private static Dictionary<string, long[]> Kohya(string name, long[] down, long[] up, bool alpha = true)
    {
        var keys = new Dictionary<string, long[]> { [name + ".lora_down.weight"] = down, [name + ".lora_up.weight"] = up };
        if (alpha) keys[name + ".alpha"] = [];
        return keys;
    }

    private static Dictionary<string, long[]> Merge(params Dictionary<string, long[]>[] parts) =>
        parts.SelectMany(p => p).ToDictionary(p => p.Key, p => p.Value);

    [Fact]
    public void Kohya_names_resolve_to_unet_and_text_encoder_module_paths_linear_and_conv()
    {
        var keys = Merge(
            Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", [4, 768], [320, 4]),
            Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0", [4, 320], [320, 4]),
            Kohya("lora_unet_down_blocks_0_attentions_0_proj_in", [4, 320, 1, 1], [320, 4, 1, 1]),
            Kohya("lora_unet_down_blocks_0_resnets_0_conv1", [8, 320, 3, 3], [320, 8, 1, 1]),
            Kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", [4, 768], [768, 4], alpha: false));
        var plan = LoraKeys.Parse(F, keys, Sd15);
        Assert.Equal(LoraFileFormat.Kohya, plan.Format);
        Assert.Empty(plan.UnknownKeys);
        var byPath = plan.Modules.ToDictionary(m => m.Path);
        Assert.Equal(5, byPath.Count);
        Assert.Equal(LoraComponent.Unet, byPath[ToK].Component);
        Assert.Equal([320L, 768L], byPath[ToK].DeltaShape);
        Assert.Equal("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha", byPath[ToK].AlphaKey);
        Assert.Equal(LoraComponent.Unet, byPath[ToOut].Component);
        Assert.Equal([320L, 320L, 1L, 1L], byPath[ProjIn].DeltaShape);
        Assert.Equal([320L, 320L, 3L, 3L], byPath[Conv1].DeltaShape);
        Assert.Equal(8, byPath[Conv1].Rank);
        Assert.Equal(LoraComponent.TextEncoder, byPath[QProj].Component);
        Assert.Null(byPath[QProj].AlphaKey);
    }

    [Fact]
    public void Diffusers_and_peft_suffixes_with_unet_and_text_encoder_prefixes()
    {
        var keys = new Dictionary<string, long[]>
        {
            [$"unet.{ToK}.lora.down.weight"] = [4, 768], [$"unet.{ToK}.lora.up.weight"] = [320, 4], [$"unet.{ToK}.alpha"] = [],
            [$"unet.{ToOut}.lora_A.weight"] = [2, 320], [$"unet.{ToOut}.lora_B.weight"] = [320, 2],
            [$"text_encoder.{QProj}.lora_linear_layer.down.weight"] = [4, 768], [$"text_encoder.{QProj}.lora_linear_layer.up.weight"] = [768, 4],
        };
        var plan = LoraKeys.Parse(F, keys, Sd15);
        Assert.Equal(LoraFileFormat.Diffusers, plan.Format);
        Assert.Empty(plan.UnknownKeys);
        var byPath = plan.Modules.ToDictionary(m => m.Path);
        Assert.Equal($"unet.{ToK}", byPath[ToK].Name);
        Assert.Equal($"unet.{ToK}.alpha", byPath[ToK].AlphaKey);
        Assert.Equal($"unet.{ToOut}.lora_A.weight", byPath[ToOut].DownKey);
        Assert.Equal(LoraComponent.TextEncoder, byPath[QProj].Component);
    }

    [Fact]
    public void Unknown_keys_are_collected_and_listed_in_one_line_with_the_way_out()
    {
        var keys = Merge(
            Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", [4, 768], [320, 4]),
            Kohya("lora_unet_down_blocks_9_attentions_0_proj_in", [4, 320], [320, 4]),
            new Dictionary<string, long[]> { ["lora_unet_down_blocks_0_attentions_0_proj_in.weird"] = [1] });
        var plan = LoraKeys.Parse(F, keys, Sd15);
        Assert.Single(plan.Modules);
        Assert.Equal(4, plan.UnknownKeys.Count);
        var message = LoraKeys.UnknownKeysMessage(F, plan.UnknownKeys);
        Assert.DoesNotContain('\n', message);
        Assert.StartsWith($"{F}: 4 key(s) are not LoRA keys", message);
        Assert.Contains("'lora_unet_down_blocks_0_attentions_0_proj_in.weird'", message);
        Assert.Contains("and 1 more", message);
        Assert.Contains("--lora-ignore-unknown", message);
    }

    [Fact]
    public void An_sd2_lora_on_sd1_names_the_first_mismatching_key_and_both_shapes()
    {
        // SD 2's cross-attention context is 1024 wide (OpenCLIP-H), SD 1's 768.
        var keys = Merge(
            Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", [4, 1024], [320, 4]),
            Kohya("lora_te_text_model_encoder_layers_0_self_attn_q_proj", [4, 1024], [1024, 4]));
        var e = Assert.Throws<InputException>(() => LoraKeys.Parse(F, keys, Sd15));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight'", e.Message); // first in key order
        Assert.Contains("[1024, 1024] delta", e.Message);
        Assert.Contains($"{QProj}.weight is [768, 768]", e.Message);
    }

    [Fact]
    public void A_one_by_one_conv_lora_fits_a_linear_weight_and_the_reverse()
    {
        Assert.True(LoraKeys.Fits([320, 320, 1, 1], [320, 320]));
        Assert.True(LoraKeys.Fits([320, 320], [320, 320, 1, 1]));
        Assert.False(LoraKeys.Fits([320, 320, 3, 3], [320, 320]));
        Assert.False(LoraKeys.Fits([320, 768], [768, 320]));
    }

    [Theory]
    [InlineData("lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a", "LoHa")]
    [InlineData("lora_unet_down_blocks_0_resnets_0_conv1.lokr_w1", "LoKr")]
    [InlineData("lora_unet_down_blocks_0_resnets_0_conv1.lora_mid.weight", "lora_mid")]
    [InlineData("lora_unet_down_blocks_0_resnets_0_conv1.dora_scale", "DoRA")]
    [InlineData("lora_unet_down_blocks_0_resnets_0_conv1.lora_magnitude_vector", "DoRA (PEFT)")]
    public void LyCORIS_keys_are_refused_with_their_kind(string key, string kind)
    {
        var keys = Merge(Kohya("lora_unet_down_blocks_0_resnets_0_conv1", [8, 320, 3, 3], [320, 8, 1, 1]), new() { [key] = [8] });
        var e = Assert.Throws<InputException>(() => LoraKeys.Parse(F, keys, Sd15));
        Assert.Contains(kind, e.Message);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void Sdxl_peft_and_foreign_files_are_refused_with_the_reason()
    {
        var sdxl = Kohya("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", [4, 768], [768, 4]);
        Assert.Contains("SDXL", Assert.Throws<InputException>(() => LoraKeys.Parse(F, sdxl, Sd15)).Message);
        var peft = new Dictionary<string, long[]> { [$"base_model.model.{ToK}.lora_A.weight"] = [4, 768], [$"base_model.model.{ToK}.lora_B.weight"] = [320, 4] };
        Assert.Contains("adapter_config.json", Assert.Throws<InputException>(() => LoraKeys.Parse(F, peft, Sd15)).Message);
        var model = new Dictionary<string, long[]> { ["model.diffusion_model.input_blocks.0.0.weight"] = [320, 4, 3, 3] };
        Assert.Contains("not a kohya", Assert.Throws<InputException>(() => LoraKeys.Parse(F, model, Sd15)).Message);
    }

    [Fact]
    public void A_file_with_its_own_diffusers_lora_config_is_refused_rather_than_merged_at_a_guessed_scale()
    {
        // A header-only safetensors file (hand-written bytes: no tensor math) with diffusers' lora_adapter_metadata.
        var path = Path.Combine(Path.GetTempPath(), $"cdiff-lora-meta-{Guid.NewGuid():N}.safetensors");
        var header = "{\"__metadata__\":{\"lora_adapter_metadata\":\"{\\\"lora_alpha\\\": 8, \\\"r\\\": 4}\"},"
            + $"\"unet.{ToK}.lora_A.weight\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}}";
        var headerBytes = System.Text.Encoding.UTF8.GetBytes(header);
        using (var f = File.Create(path))
        {
            f.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
            f.Write(headerBytes);
            f.Write(new byte[4]);
        }
        try
        {
            var e = Assert.Throws<InputException>(() => ForeignLora.Open(new LoraSpec(path, 1), Sd15, ignoreUnknown: true));
            Assert.Contains("lora_adapter_metadata", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void A_rank_zero_module_is_refused_instead_of_dividing_by_zero()
    {
        var zero = Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", [0, 768], [320, 0]);
        Assert.Contains("expected at least 1", Assert.Throws<InputException>(() => LoraKeys.Parse(F, zero, Sd15)).Message);
    }

    [Fact]
    public void A_missing_factor_an_up_kernel_and_a_rank_mismatch_are_refused()
    {
        var noUp = new Dictionary<string, long[]> { ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"] = [4, 768] };
        Assert.Contains("no up (B) factor", Assert.Throws<InputException>(() => LoraKeys.Parse(F, noUp, Sd15)).Message);
        var rank = Kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", [4, 768], [320, 8]);
        Assert.Contains("rank 4", Assert.Throws<InputException>(() => LoraKeys.Parse(F, rank, Sd15)).Message);
        var kernel = Kohya("lora_unet_down_blocks_0_resnets_0_conv1", [8, 320, 3, 3], [320, 8, 3, 3]);
        Assert.Contains("1×1", Assert.Throws<InputException>(() => LoraKeys.Parse(F, kernel, Sd15)).Message);
    }

    [Fact]
    public void Format_detection_follows_the_key_prefixes()
    {
        Assert.Equal(LoraFileFormat.Kohya, LoraFileFormats.Detect(["lora_unet_x.alpha"]));
        Assert.Equal(LoraFileFormat.Kohya, LoraFileFormats.Detect(["lora_te_x.alpha"]));
        Assert.Equal(LoraFileFormat.Diffusers, LoraFileFormats.Detect(["unet.x.lora.down.weight"]));
        Assert.Equal(LoraFileFormat.Diffusers, LoraFileFormats.Detect(["text_encoder.x.lora_A.weight"]));
        Assert.Null(LoraFileFormats.Detect(["emb_params"]));
    }

    [Fact]
    public void Kohya_names_are_the_module_paths_with_underscores_and_their_own_prefix()
    {
        Assert.Equal("lora_unet_down_blocks_0_attentions_0_proj_in", LoraTargets.KohyaName(LoraComponent.Unet, ProjIn));
        Assert.Equal("lora_te_text_model_encoder_layers_0_self_attn_q_proj", LoraTargets.KohyaName(LoraComponent.TextEncoder, QProj));
        Assert.Equal<(LoraComponent, string)?>((LoraComponent.Unet, ToOut), Sd15.FromKohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"));
        Assert.Null(Sd15.FromKohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_1"));
    }

    /// An SD 1.5 UNet's module skeleton: 4 levels of 2 resnets, attentions on levels 0-2 down and 1-3 up (3 per up level).
    private static LoraTargets Sd15Skeleton()
    {
        var unet = new Dictionary<string, long[]>();
        for (int level = 0; level < 4; level++)
        {
            for (int r = 0; r < 2; r++) unet[$"down_blocks.{level}.resnets.{r}.conv1"] = [320, 320, 3, 3];
            for (int r = 0; r < 3; r++) unet[$"up_blocks.{level}.resnets.{r}.conv1"] = [320, 320, 3, 3];
            if (level < 3) for (int a = 0; a < 2; a++) unet[$"down_blocks.{level}.attentions.{a}.transformer_blocks.0.attn2.to_k"] = [320, 768];
            if (level > 0) for (int a = 0; a < 3; a++) unet[$"up_blocks.{level}.attentions.{a}.transformer_blocks.0.attn2.to_k"] = [320, 768];
        }
        unet["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"] = [1280, 768];
        return new LoraTargets(unet, new Dictionary<string, long[]>());
    }

    /// LoRAs trained on original-LDM checkpoints use the CompVis module names. The correspondences are SD 1.5's, as
    /// diffusers' convert_ldm_unet_checkpoint and kohya's model_util.py define them (written out here, not derived).
    [Theory]
    [InlineData("lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_input_blocks_2_1_transformer_blocks_0_attn2_to_k", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_input_blocks_8_1_transformer_blocks_0_attn2_to_k", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_output_blocks_3_1_transformer_blocks_0_attn2_to_k", "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_output_blocks_11_1_transformer_blocks_0_attn2_to_k", "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k")]
    [InlineData("lora_unet_input_blocks_1_0_in_layers_2", "down_blocks.0.resnets.0.conv1")]
    [InlineData("lora_unet_output_blocks_0_0_in_layers_2", "up_blocks.0.resnets.0.conv1")]
    public void CompVis_named_kohya_modules_resolve_to_the_diffusers_paths(string kohya, string path)
    {
        var targets = Sd15Skeleton();
        Assert.Equal((LoraComponent.Unet, path), targets.FromKohya(kohya));
        Assert.Equal((LoraComponent.Unet, path), targets.FromKohya(LoraTargets.KohyaName(LoraComponent.Unet, path))); // both forms
    }
}
