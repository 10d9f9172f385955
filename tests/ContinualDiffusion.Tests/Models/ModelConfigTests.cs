using System.Text.Json.Nodes;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Models;

namespace ContinualDiffusion.Tests.Models;

/// diffusers config.json files load into UNetConfig / VaeConfig; unsupported features fail naming file and key.
public class ModelConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cfg-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteEdited(string source, string key, JsonNode? value)
    {
        var json = JsonNode.Parse(File.ReadAllText(source))!.AsObject();
        json[key] = value;
        var path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private static string UNetJson => Path.Combine(TinyModels.UNetDir, "config.json");
    private static string VaeJson => Path.Combine(TinyModels.VaeDir, "config.json");

    [Fact]
    public void Fixture_unet_config_loads_with_every_key()
    {
        var c = UNetConfig.Load(UNetJson);
        Assert.Equal([32, 64, 64], c.BlockOutChannels);
        Assert.Equal([8, 8, 8], c.AttentionHeads());
        Assert.Equal(128, c.TimeEmbedDim);
        Assert.Equal([32, 32, 32], c.CrossAttentionDims());
        Assert.Equal(UNetJson, c.Source);
        Assert.False(c.AttentionHeadDim.IsList);
    }

    [Fact]
    public void Unet_config_survives_a_serialize_and_parse_round_trip()
    {
        var original = UNetConfig.Load(Path.Combine(FullSizeConfigs.Dir, "sd21", "unet.json"));
        var json = JsonConfig.Serialize(original);
        var keys = JsonNode.Parse(json)!.AsObject().Select(p => p.Key).ToList();
        Assert.DoesNotContain("time_embed_dim", keys);   // computed properties are not config keys
        Assert.DoesNotContain("source", keys);
        var copy = JsonConfig.Parse<UNetConfig>(json, "round trip");
        Assert.Equal(original.AttentionHeads(), copy.AttentionHeads());
        Assert.True(copy.AttentionHeadDim.IsList);
        Assert.Equal(original.CrossAttentionDims(), copy.CrossAttentionDims());
        Assert.True(copy.UseLinearProjection && copy.UpcastAttention);
        Assert.Equal(original.BlockOutChannels, copy.BlockOutChannels);
    }

    [Fact]
    public void Fixture_vae_config_loads()
    {
        var c = VaeConfig.Load(VaeJson);
        Assert.Equal([32, 64], c.BlockOutChannels);
        Assert.Equal(2, c.VaeScaleFactor);
        Assert.Equal(0.18215, c.ScalingFactor);
    }

    [Fact]
    public void Per_block_attention_head_dim_list_and_num_attention_heads_override()
    {
        var listed = UNetConfig.Load(WriteEdited(UNetJson, "attention_head_dim", new JsonArray(2, 4, 8)));
        Assert.Equal([2, 4, 8], listed.AttentionHeads());
        Assert.True(listed.AttentionHeadDim.IsList);
        var overridden = UNetConfig.Load(WriteEdited(UNetJson, "num_attention_heads", 4));
        Assert.Equal([4, 4, 4], overridden.AttentionHeads());
    }

    public static TheoryData<string, string> UnsupportedUNetValues => new()
    {
        { "addition_embed_type", "\"text\"" },
        { "class_embed_type", "\"timestep\"" },
        { "time_cond_proj_dim", "256" },
        { "encoder_hid_dim", "768" },
        { "encoder_hid_dim_type", "\"text_proj\"" },
        { "num_class_embeds", "10" },
        { "only_cross_attention", "true" },
        { "dual_cross_attention", "true" },
        { "resnet_time_scale_shift", "\"scale_shift\"" },
        { "time_embedding_type", "\"fourier\"" },
        { "attention_type", "\"gated\"" },
        { "mid_block_type", "\"UNetMidBlock2DSimpleCrossAttn\"" },
        { "down_block_types", "[\"CrossAttnDownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\"]" },
        { "up_block_types", "[\"UpBlock2D\", \"CrossAttnUpBlock2D\"]" },
        { "act_fn", "\"gelu\"" },
        { "attention_head_dim", "[8, 8]" },
        { "reverse_transformer_layers_per_block", "[1, 1, 1]" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedUNetValues))]
    public void Unsupported_unet_value_is_rejected_naming_file_and_key(string key, string value)
    {
        var path = WriteEdited(UNetJson, key, JsonNode.Parse(value));
        var e = Assert.Throws<ConfigException>(() => UNetConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }

    [Fact]
    public void Unknown_unet_key_is_rejected_by_name()
    {
        var path = WriteEdited(UNetJson, "attention_heads_typo", 8);
        var e = Assert.Throws<ConfigException>(() => UNetConfig.Load(path));
        Assert.Contains("attention_heads_typo", e.Message);
    }

    [Fact]
    public void Wrongly_typed_per_block_value_is_rejected()
    {
        var path = WriteEdited(UNetJson, "attention_head_dim", "eight");
        var e = Assert.Throws<ConfigException>(() => UNetConfig.Load(path));
        Assert.Contains("attention_head_dim", e.Message);
    }

    [Theory]
    [InlineData("latents_mean", "[0.1, 0.2, 0.3, 0.4]")]
    [InlineData("down_block_types", "[\"DownEncoderBlock2D\"]")]
    [InlineData("up_block_types", "[\"UpDecoderBlock2D\", \"AttnUpDecoderBlock2D\"]")]
    [InlineData("block_out_channels", "[32, 48]")]
    public void Unsupported_vae_value_is_rejected_naming_file_and_key(string key, string value)
    {
        var path = WriteEdited(VaeJson, key, JsonNode.Parse(value));
        var e = Assert.Throws<ConfigException>(() => VaeConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }
}
