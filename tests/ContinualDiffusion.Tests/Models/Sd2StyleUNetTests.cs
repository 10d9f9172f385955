using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// SD 2.x-style configs (per-block head counts, Linear proj_in/proj_out, upcast attention) on the tiny topology.
/// No diffusers reference exists for these, so the checks are the diffusers conventions themselves.
public class Sd2StyleUNetTests
{
    /// The fixture's unet/config.json with some keys replaced, parsed like a real file.
    private static UNetConfig TinyConfigWith(params (string Key, JsonNode? Value)[] overrides)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(TinyModels.UNetDir, "config.json")))!.AsObject();
        foreach (var (key, value) in overrides) json[key] = value;
        var config = JsonConfig.Parse<UNetConfig>(json.ToJsonString(), "sd2-style config");
        config.Validate();
        return config;
    }

    private static UNetConfig Sd2Style() => TinyConfigWith(
        ("attention_head_dim", new JsonArray(2, 4, 4)),
        ("use_linear_projection", true),
        ("upcast_attention", true),
        ("cross_attention_dim", 48));

    [Fact]
    public void Linear_projection_model_has_the_diffusers_keys_with_matrix_shaped_proj_weights()
    {
        using var unet = new UNet2DConditionModel(Sd2Style());
        using var fixture = SafeTensorsFile.Open(TinyModels.UNetWeights);
        var shapes = unet.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal(fixture.Tensors.Keys.Order(StringComparer.Ordinal), shapes.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, info) in fixture.Tensors)
        {
            if (key.EndsWith(".proj_in.weight", StringComparison.Ordinal) || key.EndsWith(".proj_out.weight", StringComparison.Ordinal))
            {
                Assert.Equal([info.Shape[0], info.Shape[1], 1, 1], info.Shape); // SD 1.x: 1x1 conv
                Assert.Equal(info.Shape[..2], shapes[key]);                      // SD 2.x: Linear
            }
            else if (key.Contains(".attn2.to_k.", StringComparison.Ordinal) || key.Contains(".attn2.to_v.", StringComparison.Ordinal))
                Assert.Equal([info.Shape[0], 48L], shapes[key]);
            else
                Assert.Equal(info.Shape, shapes[key]);
        }
    }

    [Fact]
    public void Per_block_head_counts_apply_reversed_to_up_blocks_and_last_to_the_mid_block()
    {
        using var unet = new UNet2DConditionModel(Sd2Style());
        var heads = unet.CrossAttentions().ToDictionary(a => a.Prefix, a => (a.Attention.Options.Heads, a.Attention.Options.DimHead));
        Assert.Equal((2, 16), heads["down_blocks.0.attentions.1.transformer_blocks.0.attn2"]);
        Assert.Equal((4, 16), heads["down_blocks.1.attentions.0.transformer_blocks.0.attn2"]);
        Assert.Equal((4, 16), heads["up_blocks.1.attentions.2.transformer_blocks.0.attn2"]);
        Assert.Equal((2, 16), heads["up_blocks.2.attentions.0.transformer_blocks.0.attn2"]);
        Assert.Equal((4, 16), heads["mid_block.attentions.0.transformer_blocks.0.attn2"]);
        Assert.All(unet.CrossAttentions(), a => Assert.True(a.Attention.Options.Upcast));
    }

    [Fact]
    public void Forward_runs_and_keeps_the_latent_shape_including_sizes_not_divisible_by_the_downsampling()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        using var unet = new UNet2DConditionModel(Sd2Style());
        unet.eval();
        using var noGrad = torch.no_grad();
        var output = unet.call(torch.randn(2, 4, 16, 16), torch.tensor(new[] { 10.0f, 900.0f }), torch.randn(2, 5, 48));
        Assert.Equal([2L, 4L, 16L, 16L], output.shape);
        Assert.True(output.isfinite().all().item<bool>());
        // 18x14 halves to 9x7 then 5x4: the up path must be told to go back to 9x7, not 10x8.
        var odd = unet.call(torch.randn(1, 4, 18, 14), torch.tensor(500L), torch.randn(1, 5, 48));
        Assert.Equal([1L, 4L, 18L, 14L], odd.shape);
    }

    [Fact]
    public void Linear_projections_compute_what_the_equivalent_1x1_convs_compute()
    {
        // Same weights, proj_in/proj_out reshaped [C, C, 1, 1] -> [C, C]: a 1x1 conv on the map is a Linear on the
        // tokens, so the linear-projection UNet must reproduce the fixture output.
        using var scope = torch.NewDisposeScope();
        using var unet = new UNet2DConditionModel(TinyConfigWith(("use_linear_projection", true)));
        var weights = SafeTensorsFile.Load(TinyModels.UNetWeights);
        foreach (var key in weights.Keys.Where(k => k.EndsWith(".proj_in.weight") || k.EndsWith(".proj_out.weight")).ToList())
            weights[key] = weights[key].flatten(1);
        using (torch.no_grad())
            foreach (var (name, p) in unet.named_parameters()) p.copy_(weights[name]);
        unet.eval();
        using var noGrad = torch.no_grad();
        var output = unet.call(Fixture.Ref("unet.sample"), Fixture.Ref("unet.timesteps"), Fixture.Ref("unet.encoder_hidden_states"));
        Fixture.AssertClose(output, Fixture.Ref("unet.out"), what: "linear-projection unet");
    }
}
