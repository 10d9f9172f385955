using System.Text.Json;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Models;

namespace ContinualDiffusion.Tests.Interop.Export;

/// Export's naming and metadata decisions, from configs alone: no tensor is made in this class.
public class ExportNamingTests
{
    private static UNetConfig Config(string model) => UNetConfig.Load(Path.Combine(FullSizeConfigs.Dir, model, "unet.json"));

    [Theory]
    [InlineData("sd15", 768)]
    [InlineData("sd21", 1024)]
    public void Kohya_names_parse_back_to_every_cross_attention_key_and_value_projection(string model, long crossDim)
    {
        var layers = CrossAttentionLayers.KeyValue(Config(model));
        // 16 transformer blocks (2 x 3 down levels, 3 x 3 up levels, 1 mid), each with to_k and to_v.
        Assert.Equal(32, layers.Count);
        Assert.Equal(32, layers.Select(l => l.Name).Distinct().Count());
        Assert.All(layers, l => Assert.Matches(@"\.attn2\.to_[kv]$", l.Name));
        Assert.All(layers, l => Assert.Equal(crossDim, l.Shape.In));

        var inverse = KohyaNames.Inverse(layers.Select(l => l.Name));
        foreach (var (name, _) in layers)
        {
            var kohya = KohyaNames.ModuleName(name);
            Assert.StartsWith("lora_unet_", kohya);
            Assert.DoesNotContain('.', kohya);
            Assert.Equal(name, KohyaNames.ModulePath(kohya, inverse));
        }
        Assert.Equal("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
            KohyaNames.ModulePath("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", inverse));
        Assert.Equal("mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
            KohyaNames.ModulePath("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v", inverse));
        Assert.Null(KohyaNames.ModulePath("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k", inverse));
    }

    [Fact]
    public void Layer_shapes_come_from_the_config_as_the_built_models_have_them()
    {
        // FullSizeArchitectureTests reads these from SD 2.1 built on the meta device.
        var sd21 = CrossAttentionLayers.KeyValueShapes(Config("sd21"));
        Assert.Equal(new LayerShape(1280, 1024), sd21["up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k"]);
        var sd15 = CrossAttentionLayers.KeyValueShapes(Config("sd15"));
        Assert.Equal(new LayerShape(320, 768), sd15["down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v"]);
        Assert.Equal(new LayerShape(1280, 768), sd15["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"]);
        Assert.Equal(new LayerShape(320, 768), sd15["up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v"]);
        Assert.False(sd15.ContainsKey("up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k")); // UpBlock2D: no attention
        // Order: down, up, mid; to_k before to_v (as UNet2DConditionModel.CrossAttentions()).
        var names = CrossAttentionLayers.KeyValue(Config("sd15")).Select(l => l.Name).ToList();
        Assert.Equal("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", names[0]);
        Assert.Equal("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v", names[1]);
        Assert.Equal("mid_block.attentions.0.transformer_blocks.0.attn2.to_v", names[^1]);
    }

    [Fact]
    public void The_sd_tiny_fixture_has_cross_attention_in_two_down_two_up_and_the_mid_block()
    {
        var config = UNetConfig.Load(Path.Combine(Support.Fixture.SdTiny, "unet", "config.json"));
        var layers = CrossAttentionLayers.KeyValue(config);
        // down 0, 1 (2 layers each), up 1, 2 (3 layers each), mid (1): 11 attentions, 22 projections.
        Assert.Equal(22, layers.Count);
        Assert.Equal(new LayerShape(64, 32), layers.Single(l => l.Name == "mid_block.attentions.0.transformer_blocks.0.attn2.to_k").Shape);
    }

    [Theory]
    [InlineData(null, 3, 3)]
    [InlineData("", 3, 3)]
    [InlineData("2", 3, 2)]
    [InlineData("1..2", 3, 2)]
    [InlineData(" 1..3 ", 3, 3)]
    public void Tasks_select_one_to_t(string? text, int finished, int expected) =>
        Assert.Equal(expected, TaskSelection.LastTask(text, finished));

    [Theory]
    [InlineData("4", 3, "the run has 3 finished tasks (1..3); task 4 is not one of them")]
    [InlineData("1..4", 3, "task 4 is not one of them")]
    [InlineData("2..3", 3, "an export starts at task 1")]
    [InlineData("0", 3, "expected t or 1..t")]
    [InlineData("one", 3, "expected t or 1..t")]
    [InlineData("1..", 3, "expected t or 1..t")]
    [InlineData("2", 1, "the run has 1 finished task (1..1)")]
    [InlineData(null, 0, "no finished task")]
    public void Tasks_outside_the_run_are_one_line_errors(string? text, int finished, string expected)
    {
        var e = Assert.Throws<InputException>(() => TaskSelection.LastTask(text, finished));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("<v1>", "v1")]
    [InlineData("<v12>", "v12")]
    [InlineData("<my cat>", "my_cat")]
    [InlineData("<a/b:c>", "a_b_c")]
    public void Embedding_stems_are_the_token_without_brackets_and_safe_as_file_names(string token, string stem) =>
        Assert.Equal(stem, ConceptEmbedding.StemOf(token));

    [Fact]
    public void Formats_parse_by_name_and_unknown_ones_are_refused()
    {
        foreach (var name in ExportFormats.Names) Assert.Equal(name, ExportFormats.Parse(name).Name());
        Assert.Contains("known: kohya, diffusers, peft, merged, merged-single-file", Assert.Throws<InputException>(() => ExportFormats.Parse("ckpt")).Message);
        Assert.False(ExportFormat.Merged.IsLora());
        Assert.False(ExportFormat.MergedSingleFile.IsLora());
        Assert.Equal(ExportFormat.MergedSingleFile, ExportFormats.Parse("merged-single-file"));
    }

    [Theory]
    [InlineData(null, "")]
    [InlineData("faces-", "faces-")]
    [InlineData("run_2", "run_2")]
    [InlineData("A1", "A1")]
    [InlineData("_x-", "_x-")]
    public void Embedding_prefixes_of_file_name_characters_are_taken(string? prefix, string expected)
    {
        Assert.Equal(expected, EmbeddingPrefix.Validate(prefix, ExportFormat.Kohya));
        Assert.Equal(expected, EmbeddingPrefix.Validate(prefix, ExportFormat.MergedSingleFile));
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/b")]
    [InlineData("../x")]
    [InlineData("my faces")]
    [InlineData("faces.")]
    [InlineData("x\ny")]
    [InlineData("héllo")]
    [InlineData("<v>")]
    [InlineData("-x")]
    public void Embedding_prefixes_that_are_not_file_name_safe_are_one_line_errors(string prefix)
    {
        var e = Assert.Throws<InputException>(() => EmbeddingPrefix.Validate(prefix, ExportFormat.Kohya));
        Assert.StartsWith("--embedding-prefix '", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.Contains("expected 1 to 64 letters, digits, '_' or '-'", e.Message);
    }

    [Fact]
    public void An_embedding_prefix_over_64_characters_is_refused() =>
        Assert.Contains("expected 1 to 64", Assert.Throws<InputException>(() => EmbeddingPrefix.Validate(new string('a', 65), ExportFormat.Kohya)).Message);

    [Theory]
    [InlineData(ExportFormat.Diffusers)]
    [InlineData(ExportFormat.Peft)]
    [InlineData(ExportFormat.Merged)]
    public void An_embedding_prefix_is_refused_for_formats_that_key_embeddings_by_token(ExportFormat format)
    {
        var e = Assert.Throws<InputException>(() => EmbeddingPrefix.Validate("faces-", format));
        Assert.Contains($"--format {format.Name()} keys each embedding by its token", e.Message);
        Assert.Equal("", EmbeddingPrefix.Validate(null, format));
    }

    [Fact]
    public void A_prefix_names_the_embedding_files_and_the_prompt_words()
    {
        var concept = new ConceptEmbedding(1, "<v1>", null!) { StemPrefix = "faces-" };
        Assert.Equal("faces-v1", concept.Stem);
        Assert.Equal("/out/faces-v1.safetensors", EmbeddingFiles.A1111Path("/out", concept));
        var targets = RunExport.Targets(ExportFormat.MergedSingleFile, "/out/model.safetensors", ["faces-v1", "faces-v2"]);
        Assert.Equal(["/out/model.safetensors", "/out/faces-v1.safetensors", "/out/faces-v2.safetensors"], targets);
    }

    [Fact]
    public void Peft_config_has_scale_one_and_targets_exactly_the_adapted_modules()
    {
        var names = CrossAttentionLayers.KeyValue(Config("sd15")).Select(l => l.Name).ToList();
        using var doc = JsonDocument.Parse(PeftAdapter.Config(8, names, "/models/sd15"));
        var root = doc.RootElement;
        Assert.Equal("LORA", root.GetProperty("peft_type").GetString());
        Assert.Equal(8, root.GetProperty("r").GetInt32());
        Assert.Equal(8, root.GetProperty("lora_alpha").GetInt32());
        Assert.False(root.GetProperty("use_rslora").GetBoolean());
        Assert.False(root.GetProperty("use_dora").GetBoolean());
        Assert.Equal("none", root.GetProperty("bias").GetString());
        var targets = root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Equal(names.Order(StringComparer.Ordinal), targets);
        Assert.DoesNotContain(targets, t => t.Contains("attn1"));
    }

    [Fact]
    public void Kohya_metadata_says_which_stable_diffusion_the_lora_is_for()
    {
        var extra = new Dictionary<string, string> { ["cdiff_tokens"] = "<v1>,<v2>" };
        var v1 = KohyaLoraFile.Metadata(new ExportBaseModel("/m/sd15", Config("sd15"), 768, "epsilon", 512), 8, "mine", "desc", ["v1", "v2"], extra);
        Assert.Equal("networks.lora", v1["ss_network_module"]);
        Assert.Equal("8", v1["ss_network_dim"]);
        Assert.Equal("8.0", v1["ss_network_alpha"]);
        Assert.Equal("False", v1["ss_v2"]);
        Assert.Equal("sd_v1", v1["ss_base_model_version"]);
        Assert.Equal("stable-diffusion-v1/lora", v1["modelspec.architecture"]);
        Assert.Equal("1.0.0", v1["modelspec.sai_model_spec"]);
        Assert.Equal("diffusers", v1["modelspec.implementation"]);
        Assert.Equal("mine", v1["modelspec.title"]);
        Assert.Equal("512x512", v1["modelspec.resolution"]);
        Assert.Equal("v1, v2", v1["modelspec.trigger_phrase"]);
        Assert.Equal("<v1>,<v2>", v1["cdiff_tokens"]);

        var v2 = KohyaLoraFile.Metadata(new ExportBaseModel("/m/sd21", Config("sd21"), 1024, "v_prediction", 768), 4, "t", "d", ["v1"], extra);
        Assert.Equal("True", v2["ss_v2"]);
        Assert.Equal("sd_v2_v", v2["ss_base_model_version"]);
        Assert.Equal("stable-diffusion-v2-768-v/lora", v2["modelspec.architecture"]);
        Assert.Equal("v", v2["modelspec.prediction_type"]);
        var v2Epsilon = new ExportBaseModel("/m/sd21-base", Config("sd21"), 1024, "epsilon", 512);
        Assert.Equal("stable-diffusion-v2-512/lora", KohyaLoraFile.Architecture(v2Epsilon));
    }

    [Fact]
    public void A_kohya_export_writes_its_embeddings_beside_the_lora_and_refuses_a_clash()
    {
        var targets = RunExport.Targets(ExportFormat.Kohya, "/out/mine.safetensors", ["v1", "v2"]);
        Assert.Equal(["/out/mine.safetensors", "/out/v1.safetensors", "/out/v2.safetensors"], targets);
        Assert.Equal(["/out/dir"], RunExport.Targets(ExportFormat.Peft, "/out/dir", ["v1"]));
        Assert.Contains("concept embedding file v1.safetensors", Assert.Throws<InputException>(() => RunExport.Targets(ExportFormat.Kohya, "/out/v1.safetensors", ["v1"])).Message);
        Assert.Equal(["/out/m.safetensors", "/out/v1.safetensors"], RunExport.Targets(ExportFormat.MergedSingleFile, "/out/m.safetensors", ["v1"]));
        Assert.Contains("a merged single-file checkpoint is one .safetensors file", Assert.Throws<InputException>(() => RunExport.Targets(ExportFormat.MergedSingleFile, "/out/m.ckpt", ["v1"])).Message);
    }
}
