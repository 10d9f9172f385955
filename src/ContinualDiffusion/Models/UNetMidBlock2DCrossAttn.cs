using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers UNetMidBlock2DCrossAttn (num_layers 1): resnet -> (Transformer2DModel -> resnet) x layers.
public sealed class UNetMidBlock2DCrossAttn : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2DCrossAttn(UNetBlockOptions o) : base(nameof(UNetMidBlock2DCrossAttn))
    {
        int c = o.InChannels;
        attentions = nn.ModuleList(Enumerable.Range(0, o.Layers).Select(_ => new Transformer2DModel(o.Transformer(c))).ToArray());
        resnets = nn.ModuleList(Enumerable.Range(0, o.Layers + 1).Select(_ => new ResnetBlock2D(o.Resnet(c, c))).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor temb, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        var h = resnets[0].call(hidden, temb);
        for (int i = 0; i < attentions.Count; i++)
            h = resnets[i + 1].call(attentions[i].call(h, context), temb);
        return h.MoveToOuterDisposeScope();
    }

    public IEnumerable<(string Prefix, Attention Attention)> CrossAttentions() => UNetBlockAttentions.Of(attentions);
}
