using System.Text.Json;
using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop;

/// The SD 1.x fixture's LDM keys map onto exactly the keys and shapes of the modules built from the configs
/// inferred from the same header, and those configs are the diffusers configs the file was converted from.
/// Nothing here runs a network forward.
public class LdmKeyMapTests
{
    private static SingleFileCheckpoint OpenFixture(bool withYaml = true) => SingleFileCheckpoint.Open(Sd1SingleFile.Model,
        withYaml ? new SingleFileOptions { OriginalConfigPath = Sd1SingleFile.OriginalConfig } : null);

    [Fact]
    public void The_fixture_header_holds_the_keys_reference_json_lists()
    {
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var listed = Sd1SingleFile.ReferenceJson.GetProperty("single_file").GetProperty("keys").EnumerateArray().Select(k => k.GetString()!);
        Assert.Equal(listed.Order(StringComparer.Ordinal), file.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(790, file.Tensors.Count);
    }

    [Fact]
    public void Every_key_maps_once_and_each_module_gets_exactly_its_keys_and_shapes()
    {
        using var checkpoint = OpenFixture();
        var mapping = checkpoint.Mapping;
        Assert.Empty(mapping.Unknown);
        Assert.Empty(mapping.Ignored); // this file has no position_ids, EMA copies or schedule buffers

        var sources = mapping.Unet.Values.Concat(mapping.Vae.Values).Concat(mapping.TextEncoder.Values).Select(m => m.SourceKey).ToList();
        Assert.Equal(sources.Count, sources.Distinct().Count()); // SD 1.x has no fused q/k/v: one target per key
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        Assert.Equal(file.Tensors.Keys.Order(StringComparer.Ordinal), sources.Order(StringComparer.Ordinal));

        var arch = checkpoint.Architecture;
        using (var unet = new UNet2DConditionModel(arch.Unet)) AssertSameKeysAndShapes(unet, mapping.Unet, "UNet");
        using (var vae = new AutoencoderKL(arch.Vae)) AssertSameKeysAndShapes(vae, mapping.Vae, "VAE");
        using (var text = new ClipTextModel(arch.TextEncoder)) AssertSameKeysAndShapes(text, mapping.TextEncoder, "text encoder");
    }

    internal static void AssertSameKeysAndShapes(nn.Module module, IReadOnlyDictionary<string, MappedTensor> mapped, string what)
    {
        var targets = StateDictLoader.Targets(module);
        var missing = targets.Keys.Except(mapped.Keys).Order(StringComparer.Ordinal).ToList();
        var unexpected = mapped.Keys.Except(targets.Keys).Order(StringComparer.Ordinal).ToList();
        Assert.True(missing.Count == 0, $"{what}: {missing.Count} module keys get no tensor, e.g. {string.Join(", ", missing.Take(5))}");
        Assert.True(unexpected.Count == 0, $"{what}: {unexpected.Count} mapped keys are not in the module, e.g. {string.Join(", ", unexpected.Take(5))}");
        foreach (var (key, target) in targets)
            Assert.True(mapped[key].Shape.SequenceEqual(target.shape),
                $"{what} '{key}' from '{mapped[key].SourceKey}': [{string.Join(", ", mapped[key].Shape)}] vs module [{string.Join(", ", target.shape)}]");
    }

    [Fact]
    public void Configs_inferred_with_the_yaml_equal_the_diffusers_configs_of_the_source_model()
    {
        using var checkpoint = OpenFixture();
        var arch = checkpoint.Architecture;
        Assert.Equal(SdVersion.Sd1, arch.Version);

        var expectedUnet = JsonConfig.Parse<UNetConfig>(Sd1SingleFile.ModelConfig("unet").GetRawText(), "model_configs.unet");
        AssertSameJson(expectedUnet, arch.Unet, "unet");

        // VAE sample_size is the image side the UNet samples at (16 × 8); the source model's 64 was arbitrary and is
        // read by nothing (diffusers' own single-file loader writes 512 there for every SD 1.x file).
        var expectedVae = JsonConfig.Parse<VaeConfig>(Sd1SingleFile.ModelConfig("vae").GetRawText(), "model_configs.vae");
        Assert.Equal(128, arch.Vae.SampleSize);
        AssertSameJson(expectedVae with { SampleSize = arch.Vae.SampleSize }, arch.Vae, "vae");

        var text = Sd1SingleFile.ModelConfig("text_encoder");
        var t = arch.TextEncoder;
        foreach (var (key, value) in new (string, object)[]
                 {
                     ("hidden_size", t.HiddenSize), ("intermediate_size", t.IntermediateSize), ("num_hidden_layers", t.NumHiddenLayers),
                     ("num_attention_heads", t.NumAttentionHeads), ("max_position_embeddings", t.MaxPositionEmbeddings), ("vocab_size", t.VocabSize),
                     ("hidden_act", t.HiddenAct), ("layer_norm_eps", t.LayerNormEps), ("bos_token_id", t.BosTokenId), ("eos_token_id", t.EosTokenId),
                     ("pad_token_id", t.PadTokenId), ("projection_dim", t.ProjectionDim),
                 })
        {
            var expected = text.GetProperty(key);
            bool same = expected.ValueKind == JsonValueKind.String
                ? expected.GetString() == (string)value
                : expected.GetDouble() == Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(same, $"text_encoder '{key}': expected {expected.GetRawText()}, inferred {value}");
        }
    }

    [Fact]
    public void Scheduler_is_ddim_with_the_ldm_schedule_the_reference_pipeline_used()
    {
        using var checkpoint = OpenFixture(withYaml: false);
        var s = checkpoint.Architecture.Scheduler;
        var b = Sd1SingleFile.ReferenceJson.GetProperty("schedulers").GetProperty("base_config");
        Assert.Equal("DDIMScheduler", s.ClassName);
        Assert.Equal(b.GetProperty("num_train_timesteps").GetInt32(), s.NumTrainTimesteps);
        Assert.Equal(b.GetProperty("beta_start").GetDouble(), s.BetaStart);
        Assert.Equal(b.GetProperty("beta_end").GetDouble(), s.BetaEnd);
        Assert.Equal(b.GetProperty("beta_schedule").GetString(), s.BetaSchedule);
        Assert.Equal(b.GetProperty("steps_offset").GetInt32(), s.StepsOffset);
        Assert.Equal(b.GetProperty("clip_sample").GetBoolean(), s.ClipSample);
        Assert.Equal(b.GetProperty("set_alpha_to_one").GetBoolean(), s.SetAlphaToOne);
        Assert.Equal(b.GetProperty("prediction_type").GetString(), s.PredictionType);
        Assert.Null(s.TimestepSpacing); // each sampler's own default, as for the reference (DDIM: leading)
    }

    [Fact]
    public void Without_the_yaml_only_the_default_resolution_differs()
    {
        using var withYaml = OpenFixture();
        using var without = OpenFixture(withYaml: false);
        Assert.Equal(16, withYaml.Architecture.Unet.SampleSize);  // model.params.image_size
        Assert.Equal(64, without.Architecture.Unet.SampleSize);   // SD 1.x: 512 px / 8
        AssertSameJson(withYaml.Architecture.Unet with { SampleSize = 64 }, without.Architecture.Unet, "unet");
        AssertSameJson(withYaml.Architecture.Vae with { SampleSize = 512 }, without.Architecture.Vae, "vae");
        AssertSameJson(withYaml.Architecture.TextEncoder, without.Architecture.TextEncoder, "text_encoder");
        AssertSameJson(withYaml.Architecture.Scheduler, without.Architecture.Scheduler, "scheduler");
    }

    [Fact]
    public void A_yaml_that_contradicts_the_weights_is_refused_naming_the_key()
    {
        var yaml = Path.Combine(Directory.CreateTempSubdirectory("cdiff-ldm-yaml-").FullName, "wrong.yaml");
        try
        {
            File.WriteAllText(yaml, File.ReadAllText(Sd1SingleFile.OriginalConfig).Replace("model_channels: 32", "model_channels: 64"));
            var e = Assert.Throws<ConfigException>(() => SingleFileCheckpoint.Open(Sd1SingleFile.Model, new SingleFileOptions { OriginalConfigPath = yaml }));
            Assert.Contains("model.params.unet_config.params.model_channels", e.Message);
            Assert.Contains("= 64", e.Message);
        }
        finally { Directory.Delete(Path.GetDirectoryName(yaml)!, recursive: true); }
    }

    [Theory]
    [InlineData("time_embed.2.bias", "time_embedding.linear_2.bias")]
    [InlineData("input_blocks.0.0.weight", "conv_in.weight")]
    [InlineData("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight")]
    [InlineData("input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight")]
    [InlineData("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight")]
    [InlineData("input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias")]
    [InlineData("input_blocks.8.0.emb_layers.1.weight", "down_blocks.2.resnets.1.time_emb_proj.weight")]
    [InlineData("middle_block.0.out_layers.3.weight", "mid_block.resnets.0.conv2.weight")]
    [InlineData("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight")]
    [InlineData("middle_block.2.in_layers.2.bias", "mid_block.resnets.1.conv1.bias")]
    [InlineData("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight")]
    [InlineData("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias")]
    [InlineData("output_blocks.5.1.proj_out.weight", "up_blocks.1.attentions.2.proj_out.weight")]
    [InlineData("output_blocks.6.0.out_layers.0.bias", "up_blocks.2.resnets.0.norm2.bias")]
    [InlineData("out.0.weight", "conv_norm_out.weight")]
    [InlineData("out.2.bias", "conv_out.bias")]
    [InlineData("input_blocks.1.2.weight", null)]
    [InlineData("input_blocks.1.0.in_layers.1.weight", null)]
    public void Unet_rule(string ldm, string? diffusers) => Assert.Equal(diffusers, LdmKeyMap.UnetKey(ldm, layersPerBlock: 2));

    [Theory]
    [InlineData("encoder.norm_out.weight", "encoder.conv_norm_out.weight", TensorConversion.Copy)]
    [InlineData("encoder.down.1.block.0.nin_shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", TensorConversion.Copy)]
    [InlineData("encoder.down.2.downsample.conv.bias", "encoder.down_blocks.2.downsamplers.0.conv.bias", TensorConversion.Copy)]
    [InlineData("decoder.up.3.block.2.conv1.weight", "decoder.up_blocks.0.resnets.2.conv1.weight", TensorConversion.Copy)]
    [InlineData("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight", TensorConversion.Copy)]
    [InlineData("decoder.mid.block_2.norm1.bias", "decoder.mid_block.resnets.1.norm1.bias", TensorConversion.Copy)]
    [InlineData("encoder.mid.attn_1.norm.weight", "encoder.mid_block.attentions.0.group_norm.weight", TensorConversion.Copy)]
    [InlineData("encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight", TensorConversion.Conv1x1ToLinear)]
    [InlineData("decoder.mid.attn_1.v.bias", "decoder.mid_block.attentions.0.to_v.bias", TensorConversion.Copy)]
    [InlineData("decoder.mid.attn_1.proj_out.weight", "decoder.mid_block.attentions.0.to_out.0.weight", TensorConversion.Conv1x1ToLinear)]
    [InlineData("post_quant_conv.weight", "post_quant_conv.weight", TensorConversion.Copy)]
    [InlineData("encoder.down.0.attn.0.q.weight", null, TensorConversion.Copy)]
    public void Vae_rule(string ldm, string? diffusers, TensorConversion conversion)
    {
        var (name, actual) = LdmKeyMap.VaeKey(ldm, blocks: 4);
        Assert.Equal(diffusers, name);
        Assert.Equal(conversion, actual);
    }

    [Theory]
    [InlineData("text_model.encoder.layers.0.mlp.fc1.weight", "text_model.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("encoder.layers.0.mlp.fc1.weight", "text_model.encoder.layers.0.mlp.fc1.weight")] // older transformers: no text_model level
    [InlineData("final_layer_norm.bias", "text_model.final_layer_norm.bias")]
    public void Sd1_text_encoder_rule(string ldm, string diffusers) => Assert.Equal(diffusers, LdmKeyMap.ClipKey(ldm));

    [Fact]
    public void Position_ids_and_schedule_buffers_are_ignored_and_a_stray_key_is_unknown()
    {
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var header = new Dictionary<string, SafeTensorInfo>(file.Tensors, StringComparer.Ordinal);
        void Add(string key, params long[] shape) => header[key] = new SafeTensorInfo(key, "F32", shape, 0, 4 * shape.Aggregate(1L, (a, b) => a * b));
        Add("cond_stage_model.transformer.text_model.embeddings.position_ids", 1, 77);
        Add("alphas_cumprod", 1000);
        Add("model_ema.decay");
        Add("model.diffusion_model.input_blocks.1.0.weird.weight", 4);
        var mapping = LdmKeyMap.Map(header, new LdmLayout(2, 4, 3), "edited");
        Assert.Equal(new[] { "alphas_cumprod", "cond_stage_model.transformer.text_model.embeddings.position_ids", "model_ema.decay" }, mapping.Ignored.Order(StringComparer.Ordinal));
        Assert.Equal(new[] { "model.diffusion_model.input_blocks.1.0.weird.weight" }, mapping.Unknown);
        Assert.True(LdmKeyMap.IsScheduleBuffer("alphas_cumprod"));
    }

    [Fact]
    public void Loading_applies_the_renames_and_squeezes_the_vae_attention_convolutions()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Open(Sd1SingleFile.Model, new SingleFileOptions { OriginalConfigPath = Sd1SingleFile.OriginalConfig });
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var unet = StateDictLoader.Targets(model.Unet);
        var vae = StateDictLoader.Targets(model.Vae);
        var text = StateDictLoader.Targets(model.TextEncoder);

        void Same(Tensor loaded, string ldmKey)
        {
            var stored = file.Read(ldmKey);
            Assert.Equal(loaded.numel(), stored.numel());
            Assert.True(loaded.equal(stored.reshape(loaded.shape)).all().item<bool>(), ldmKey);
        }
        Same(unet["up_blocks.1.upsamplers.0.conv.weight"], "model.diffusion_model.output_blocks.5.2.conv.weight");
        Same(unet["down_blocks.1.resnets.0.conv_shortcut.weight"], "model.diffusion_model.input_blocks.4.0.skip_connection.weight");
        Same(vae["decoder.up_blocks.0.resnets.1.conv2.weight"], "first_stage_model.decoder.up.3.block.1.conv2.weight");
        Assert.Equal([64L, 64L], vae["encoder.mid_block.attentions.0.to_q.weight"].shape);
        Same(vae["encoder.mid_block.attentions.0.to_q.weight"], "first_stage_model.encoder.mid.attn_1.q.weight");
        Same(vae["decoder.mid_block.attentions.0.to_out.0.weight"], "first_stage_model.decoder.mid.attn_1.proj_out.weight");
        Same(text["text_model.encoder.layers.2.self_attn.v_proj.bias"], "cond_stage_model.transformer.text_model.encoder.layers.2.self_attn.v_proj.bias");

        Assert.Equal(0.18215, model.Vae.ScalingFactor);
        Assert.Equal(8, model.VaeScaleFactor);
        Assert.Equal(49407L, model.Tokenizer.PadId);
    }

    [Fact]
    public void The_bundled_tokenizer_encodes_the_reference_prompts_as_the_reference_pipeline_did()
    {
        using var scope = torch.NewDisposeScope();
        using var checkpoint = OpenFixture(withYaml: false);
        var tokenizer = checkpoint.CreateTokenizer();
        var prompts = Sd1SingleFile.ReferenceJson.GetProperty("prompts").EnumerateArray().Select(p => p.GetString()!).ToList();
        var ids = ClipTokenizer.ToTensor(prompts.Select(tokenizer.Encode).ToList());
        var expected = Sd1SingleFile.Ref("tokenizer.input_ids");
        Assert.Equal(expected.shape, ids.shape);
        Assert.True(ids.equal(expected).all().item<bool>());
    }

    /// Two config records hold the same values: compared as the JSON diffusers would read, key by key.
    internal static void AssertSameJson<T>(T expected, T actual, string what)
    {
        var e = JsonSerializer.SerializeToNode(expected, JsonConfig.Options)!.AsObject();
        var a = JsonSerializer.SerializeToNode(actual, JsonConfig.Options)!.AsObject();
        var keys = e.Select(p => p.Key).Union(a.Select(p => p.Key)).Order(StringComparer.Ordinal);
        var differences = keys.Where(k => !JsonNode.DeepEquals(e[k], a[k]))
            .Select(k => $"{k}: expected {e[k]?.ToJsonString() ?? "null"}, inferred {a[k]?.ToJsonString() ?? "null"}").ToList();
        Assert.True(differences.Count == 0, $"{what}: " + string.Join("; ", differences));
    }
}
