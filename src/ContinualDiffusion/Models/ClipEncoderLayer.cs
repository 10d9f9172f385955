using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPEncoderLayer, pre-LayerNorm: x += attn(LN1(x)); x += mlp(LN2(x)).
public sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly ClipAttention self_attn;
    private readonly LayerNorm layer_norm1;
    private readonly ClipMlp mlp;
    private readonly LayerNorm layer_norm2;

    public ClipEncoderLayer(ClipTextConfig config, Device? device = null) : base(nameof(ClipEncoderLayer))
    {
        self_attn = new ClipAttention(config, device);
        layer_norm1 = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps, device: device);
        mlp = new ClipMlp(config, device);
        layer_norm2 = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps, device: device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var n1 = layer_norm1.forward(x);
        using var a = self_attn.forward(n1);
        using var h = x.Plus(a);
        using var n2 = layer_norm2.forward(h);
        using var m = mlp.forward(n2);
        return h.Plus(m);
    }
}
