using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

public class ClipTextModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-clip-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TextEncoderDir => Path.Combine(Fixture.SdTiny, "text_encoder");
    private static ClipTextModel LoadTiny() => ClipTextModel.FromPretrained(TextEncoderDir);

    private static long CountParameters(nn.Module m) => m.parameters().Sum(p => p.numel());

    [Fact]
    public void Tiny_text_encoder_has_the_reference_parameter_count()
    {
        using var model = LoadTiny();
        long expected = Fixture.ReferenceJson.GetProperty("parameter_counts").GetProperty("text_encoder").GetInt64();
        Assert.Equal(1_621_696, expected);
        Assert.Equal(expected, CountParameters(model));
    }

    [Fact]
    public void Parameter_names_are_the_transformers_checkpoint_keys()
    {
        using var model = LoadTiny();
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("text_model.embeddings.token_embedding.weight", names);
        Assert.Contains("text_model.embeddings.position_embedding.weight", names);
        Assert.Contains("text_model.encoder.layers.2.self_attn.out_proj.bias", names);
        Assert.Contains("text_model.encoder.layers.0.mlp.fc1.weight", names);
        Assert.Contains("text_model.encoder.layers.1.layer_norm2.weight", names);
        Assert.Contains("text_model.final_layer_norm.bias", names);
        Assert.Empty(model.named_buffers());
    }

    [Fact]
    public void Sd15_text_encoder_has_123_060_480_parameters()
    {
        var config = ClipTextConfig.Load(Path.Combine(Fixture.Root, "tests", "fixtures", "configs", "sd15", "text_encoder.json"));
        // The meta device allocates no storage, so the 123M-parameter model costs nothing to build.
        using var model = new ClipTextModel(config, torch.META);
        Assert.Equal(123_060_480, CountParameters(model));
    }

    [Fact]
    public void Last_hidden_state_matches_transformers_for_the_fixture_prompts()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var noGrad = torch.no_grad();
        using var output = model.Encode(Fixture.Ref("tokenizer.input_ids"));
        Fixture.AssertClose(output.LastHiddenState, Fixture.Ref("text_encoder.last_hidden_state"), what: "last_hidden_state");
    }

    [Fact]
    public void Hidden_states_match_transformers_for_the_fixture_prompts()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var noGrad = torch.no_grad();
        using var output = model.Encode(Fixture.Ref("tokenizer.input_ids"), outputHiddenStates: true);
        Assert.NotNull(output.HiddenStates);
        Assert.Equal(4, output.HiddenStates!.Count);
        var expected = Fixture.Ref("text_encoder.hidden_states");
        for (int i = 0; i < 4; i++)
            Fixture.AssertClose(output.HiddenStates[i], expected[i], what: $"hidden_states[{i}]");
    }

    [Fact]
    public void Pooler_output_matches_transformers_for_the_fixture_prompts()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var noGrad = torch.no_grad();
        using var output = model.Encode(Fixture.Ref("tokenizer.input_ids"));
        Fixture.AssertClose(output.PoolerOutput, Fixture.Ref("text_encoder.pooler_output"), what: "pooler_output");
    }

    [Fact]
    public void Forward_returns_the_last_hidden_state()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var noGrad = torch.no_grad();
        var ids = Fixture.Ref("tokenizer.input_ids")[TensorIndex.Slice(0, 2)];
        var expected = Fixture.Ref("text_encoder.last_hidden_state")[TensorIndex.Slice(0, 2)];
        Fixture.AssertClose(model.forward(ids), expected, what: "forward");
        // The caller's ids tensor stays usable after a forward pass.
        Fixture.AssertClose(model.forward(ids), expected, what: "second forward with the same ids");
    }

    [Fact]
    public void More_tokens_than_positions_is_rejected()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        var e = Assert.Throws<ArgumentException>(() => model.forward(torch.zeros(1, 78, dtype: ScalarType.Int64)));
        Assert.Contains("78", e.Message);
    }

    [Fact]
    public void Checkpoint_with_the_legacy_position_ids_buffer_loads()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = SafeTensorsFile.Load(Path.Combine(TextEncoderDir, "model.safetensors"));
        tensors["text_model.embeddings.position_ids"] = OwnedScalars.Arange(0, 77, ScalarType.Int64).unsqueeze(0);
        var path = Path.Combine(_dir, "with_position_ids.safetensors");
        SafeTensorsFile.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        using var model = new ClipTextModel(ClipTextConfig.Load(Path.Combine(TextEncoderDir, "config.json")));
        model.LoadWeights(path);
        model.eval();
        using var noGrad = torch.no_grad();
        using var output = model.Encode(Fixture.Ref("tokenizer.input_ids"));
        Fixture.AssertClose(output.LastHiddenState, Fixture.Ref("text_encoder.last_hidden_state"), what: "last_hidden_state");
    }

    [Fact]
    public void Checkpoint_with_a_projection_head_is_rejected_by_key()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = SafeTensorsFile.Load(Path.Combine(TextEncoderDir, "model.safetensors"));
        tensors["text_projection.weight"] = torch.zeros(32, 32);
        var path = Path.Combine(_dir, "with_projection.safetensors");
        SafeTensorsFile.Save(path, tensors, new Dictionary<string, string>());
        using var model = new ClipTextModel(ClipTextConfig.Load(Path.Combine(TextEncoderDir, "config.json")));
        var e = Assert.Throws<CheckpointMismatchException>(() => model.LoadWeights(path));
        Assert.Contains("text_projection.weight", e.Message);
    }

    private string WriteConfig(string from, string to)
    {
        var text = File.ReadAllText(Path.Combine(TextEncoderDir, "config.json"));
        Assert.Contains(from, text);
        var path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, text.Replace(from, to));
        return path;
    }

    [Fact]
    public void Unsupported_activation_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => ClipTextConfig.Load(WriteConfig("\"quick_gelu\"", "\"relu\"")));
        Assert.Contains("hidden_act", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Model_with_projection_architecture_is_rejected()
    {
        var e = Assert.Throws<ConfigException>(() => ClipTextConfig.Load(WriteConfig("\"CLIPTextModel\"", "\"CLIPTextModelWithProjection\"")));
        Assert.Contains("architectures", e.Message);
    }

    [Fact]
    public void Heads_that_do_not_divide_the_hidden_size_are_rejected()
    {
        var e = Assert.Throws<ConfigException>(() => ClipTextConfig.Load(WriteConfig("\"num_attention_heads\": 4", "\"num_attention_heads\": 5")));
        Assert.Contains("num_attention_heads", e.Message);
    }

    [Fact]
    public void Unknown_config_key_is_rejected()
    {
        var e = Assert.Throws<ConfigException>(() => ClipTextConfig.Load(WriteConfig("\"vocab_size\": 49408", "\"vocab_size\": 49408, \"use_flash\": true")));
        Assert.Contains("use_flash", e.Message);
    }

    [Fact]
    public void Gelu_config_uses_the_erf_gelu()
    {
        using var scope = torch.NewDisposeScope();
        // Same weights, other activation: the output must change, and stay finite.
        using var quick = LoadTiny();
        using var gelu = new ClipTextModel(ClipTextConfig.Load(WriteConfig("\"quick_gelu\"", "\"gelu\"")));
        gelu.LoadWeights(Path.Combine(TextEncoderDir, "model.safetensors"));
        using var noGrad = torch.no_grad();
        var ids = Fixture.Ref("tokenizer.input_ids");
        var a = quick.forward(ids);
        var b = gelu.forward(ids);
        Assert.True(b.isfinite().all().item<bool>());
        Assert.True(Fixture.RelError(b, a) > 1e-4);
        Assert.True(Fixture.RelError(b, a) < 0.5);
    }
}
