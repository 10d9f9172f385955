using ContinualDiffusion.Classification;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Classification;

public sealed class VisionTransformerTests
{
    [Fact]
    public void Features_and_logits_have_the_documented_shapes_and_timm_names()
    {
        using var vit = ClassifyTestData.TinyVit(classes: 5);
        var x = torch.rand(3, 1, 28, 28);
        Assert.Equal([3L, 16], vit.Features(x).shape);
        Assert.Equal([3L, 5], vit.forward(x).shape);
        var names = vit.state_dict().Keys.ToHashSet();
        foreach (var key in new[] { "cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight", "blocks.1.attn.qkv.weight",
                     "blocks.1.attn.proj.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "norm.weight", "head.weight" })
            Assert.Contains(key, names);
        Assert.Equal([1L, 17, 16], vit.state_dict()["pos_embed"].shape); // 4×4 patches + the class token
    }

    [Fact]
    public void Attention_matches_softmax_of_scaled_scores_computed_by_hand()
    {
        var config = ClassifyTestData.Tiny;
        using var attention = TensorOwnership.Build(() => new VitAttention(config));
        var x = torch.randn(2, 5, 16);
        var got = attention.forward(x);

        var sd = attention.state_dict();
        var qkv = nn.functional.linear(x, sd["qkv.weight"], sd["qkv.bias"]).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4);
        var scores = qkv[0].matmul(qkv[1].transpose(-1, -2)).DividedBy(Math.Sqrt(8));
        var mixed = scores.softmax(-1).matmul(qkv[2]).transpose(1, 2).reshape(2, 5, 16);
        var expected = nn.functional.linear(mixed, sd["proj.weight"], sd["proj.bias"]);
        Assert.True(got.allclose(expected, rtol: 1e-5, atol: 1e-6), $"max difference {got.sub(expected).abs().max().item<float>():E2}");
    }

    [Fact]
    public void Prefix_keys_and_values_extend_what_tokens_attend_to_but_not_the_token_count()
    {
        using var vit = ClassifyTestData.TinyVit();
        var x = torch.rand(2, 1, 28, 28);
        var plain = vit.Features(x);
        var withPrefix = vit.Features(x, prefixes: i => i == 0 ? (torch.randn(2, 3, 16), torch.randn(2, 3, 16)) : null);
        Assert.Equal(plain.shape, withPrefix.shape);
        Assert.False(plain.allclose(withPrefix, 1e-4, 1e-5), "a random prefix changed nothing");
        var prepended = vit.Features(x, prependTokens: torch.randn(2, 4, 16));
        Assert.Equal(plain.shape, prepended.shape);
        Assert.False(plain.allclose(prepended, 1e-4, 1e-5), "prepended tokens changed nothing");
    }

    [Fact]
    public void A_checkpoint_round_trip_gives_the_same_logits_and_metadata()
    {
        var dir = Directory.CreateTempSubdirectory("cdiff-vit-").FullName;
        try
        {
            var path = Path.Combine(dir, "vit.safetensors");
            using var vit = ClassifyTestData.TinyVit(classes: 4);
            VitCheckpoint.Save(path, vit, ["a", "b", "c", "d"], "test set", 0.75);
            var (loaded, info) = VitCheckpoint.Load(path);
            using (loaded)
            {
                var x = torch.rand(2, 1, 28, 28);
                Assert.Equal(0f, vit.forward(x).sub(loaded.forward(x)).abs().max().item<float>());
                Assert.Equal(ClassifyTestData.Tiny, info.Config);
                Assert.Equal(["a", "b", "c", "d"], info.Classes);
                Assert.Equal(0.75, info.TestAccuracy);
                Assert.Equal("test set", info.Dataset);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_config_that_cannot_be_built_is_refused_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => (ClassifyTestData.Tiny with { PatchSize = 5 }).Validate("vit.json"));
        Assert.Contains("vit.json: key 'patch_size'", e.Message);
        e = Assert.Throws<ConfigException>(() => (ClassifyTestData.Tiny with { NumHeads = 3 }).Validate("vit.json"));
        Assert.Contains("key 'num_heads'", e.Message);
    }
}
