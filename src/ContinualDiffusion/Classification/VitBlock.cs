using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// timm's ViT `Block`, pre-LayerNorm: x += attn(norm1(x)); x += mlp(norm2(x)).
public sealed class VitBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1;  // key: blocks.N.norm1
    private readonly VitAttention attn; // key: blocks.N.attn
    private readonly LayerNorm norm2;  // key: blocks.N.norm2
    private readonly VitMlp mlp;       // key: blocks.N.mlp

    public VitBlock(VitConfig config) : base(nameof(VitBlock))
    {
        norm1 = nn.LayerNorm(config.EmbedDim, eps: config.LayerNormEps);
        attn = new VitAttention(config);
        norm2 = nn.LayerNorm(config.EmbedDim, eps: config.LayerNormEps);
        mlp = new VitMlp(config);
        RegisterComponents();
    }

    public VitAttention Attention => attn;

    public override Tensor forward(Tensor x) => Forward(x, null, null);

    /// With prefix keys and values [B, P, dim] for this block's attention (or none).
    public Tensor Forward(Tensor x, Tensor? prefixKeys, Tensor? prefixValues)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.Forward(norm1.call(x), prefixKeys, prefixValues));
        return h.Plus(mlp.call(norm2.call(h))).MoveToOuterDisposeScope();
    }
}
