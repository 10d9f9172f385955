using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ContinualDiffusion.Tests.Models;

/// The contract the LoRA adapters rely on: enumerating cross-attentions and swapping their projections.
public class AttentionTests
{
    private sealed class Wrapper : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> inner;
        public Wrapper(Module<Tensor, Tensor> wrapped) : base(nameof(Wrapper)) { inner = wrapped; RegisterComponents(); }
        public override Tensor forward(Tensor input) => inner.call(input);
    }

    [Fact]
    public void Cross_attentions_are_listed_with_their_state_dict_prefixes_in_diffusers_order()
    {
        using var unet = TinyModels.LoadUNet();
        using var file = SafeTensorsFile.Open(TinyModels.UNetWeights);
        var list = unet.CrossAttentions();
        // Cross-attention stages: down 0 and 1 (2 layers each), up 1 and 2 (3 each), mid (1).
        Assert.Equal(11, list.Count);
        Assert.Equal("down_blocks.0.attentions.0.transformer_blocks.0.attn2", list[0].Prefix);
        Assert.Equal("up_blocks.1.attentions.0.transformer_blocks.0.attn2", list[4].Prefix);
        Assert.Equal("mid_block.attentions.0.transformer_blocks.0.attn2", list[^1].Prefix);
        Assert.Equal(list.Count, list.Select(a => a.Prefix).Distinct().Count());
        foreach (var (prefix, attention) in list)
        {
            var toK = (Linear)attention.ToK;
            Assert.Equal(file.Tensors[prefix + ".to_k.weight"].Shape, toK.weight!.shape);
            Assert.Null(toK.bias);
            Assert.Equal(32, attention.Options.ContextDim);
        }
    }

    [Fact]
    public void Replacing_a_projection_changes_the_forward_and_keeps_the_key_when_the_replacement_has_a_weight()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        using var noGrad = torch.no_grad();
        var (prefix, attention) = unet.CrossAttentions()[0];
        var original = (Linear)attention.ToK;
        var sample = Fixture.Ref("unet.sample");
        var t = Fixture.Ref("unet.timesteps");
        var context = Fixture.Ref("unet.encoder_hidden_states");
        var before = unet.call(sample, t, context);

        var doubled = nn.Linear(original.in_features, original.out_features, hasBias: false);
        doubled.weight!.copy_(original.weight!.Times(2));
        attention.ReplaceProjection("to_k", doubled);

        Assert.Same(doubled, attention.ToK);
        var parameters = unet.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(TinyModels.TinyUNetParameters, parameters.Values.Sum(p => p.numel()));
        Assert.True(parameters[prefix + ".to_k.weight"].eq(original.weight!.Times(2)).all().item<bool>());
        Assert.True(Fixture.RelError(unet.call(sample, t, context), before) > 1e-4);

        // A wrapper is registered under the same name: its own submodule names appear below `to_k`.
        attention.ReplaceProjection("to_k", new Wrapper(original));
        var names = unet.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains(prefix + ".to_k.inner.weight", names);
        Assert.DoesNotContain(prefix + ".to_k.weight", names);
        Fixture.AssertClose(unet.call(sample, t, context), before, 1e-6, "wrapped original projection");
    }

    [Fact]
    public void Only_q_k_v_projections_can_be_replaced()
    {
        using var attention = new Attention(new AttentionOptions(8, 2, 4));
        var e = Assert.Throws<ArgumentException>(() => attention.ReplaceProjection("to_out", nn.Linear(8, 8)));
        Assert.Contains("to_out", e.Message);
    }

    [Fact]
    public void Vae_style_attention_adds_the_residual_to_the_group_normed_map_attention()
    {
        // With to_out zeroed the block must return its input exactly (residual connection, rescale 1).
        using var scope = torch.NewDisposeScope();
        using var attention = new Attention(new AttentionOptions(32, 1, 32) { Bias = true, GroupNormGroups = 8, NormEps = 1e-6, ResidualConnection = true });
        using (torch.no_grad())
            foreach (var (name, p) in attention.named_parameters().Where(p => p.name.StartsWith("to_out.0.", StringComparison.Ordinal))) p.zero_();
        var x = torch.randn(2, 32, 4, 3);
        var y = attention.call(x, null);
        Assert.Equal(x.shape, y.shape);
        Assert.True(y.eq(x).all().item<bool>());
        Assert.Equal(
            ["group_norm.bias", "group_norm.weight", "to_k.bias", "to_k.weight", "to_out.0.bias", "to_out.0.weight", "to_q.bias", "to_q.weight", "to_v.bias", "to_v.weight"],
            attention.named_parameters().Select(p => p.name).Order(StringComparer.Ordinal));
    }
}
