using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// The VAE's GroupNorm epsilon: diffusers' Encoder/Decoder hard-code resnet_eps=1e-6 (not configurable).
internal static class VaeNorm
{
    public const double Eps = 1e-6;

    public static ResnetOptions Resnet(int inChannels, int outChannels, int groups) => new(inChannels, outChannels, null, groups, Eps);
}

/// diffusers DownEncoderBlock2D: resnets without time embedding, then (except in the last block) a downsampler
/// with padding 0, i.e. the asymmetric right/bottom pad.
public sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int layers, int groups, bool addDownsample) : base(nameof(DownEncoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(i => new ResnetBlock2D(VaeNorm.Resnet(i == 0 ? inChannels : outChannels, outChannels, groups))).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, padding: 0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = input;
        foreach (var resnet in resnets) h = resnet.call(h, null);
        if (downsamplers is not null) h = downsamplers[0].call(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// diffusers UpDecoderBlock2D: resnets without time embedding, then (except in the last block) a x2 upsampler.
public sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int layers, int groups, bool addUpsample) : base(nameof(UpDecoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(i => new ResnetBlock2D(VaeNorm.Resnet(i == 0 ? inChannels : outChannels, outChannels, groups))).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = input;
        foreach (var resnet in resnets) h = resnet.call(h, null);
        if (upsamplers is not null) h = upsamplers[0].call(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// diffusers UNetMidBlock2D as used by the VAE: resnet -> self-attention -> resnet. The attention is the
/// "deprecated attention block" form: one head of width C, GroupNorm input, q/k/v biases, residual connection.
public sealed class UNetMidBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<Attention> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2D(int channels, int groups) : base(nameof(UNetMidBlock2D))
    {
        // diffusers sets upcast_softmax for this block; computing the whole attention in float32 covers it.
        attentions = nn.ModuleList(new Attention(new AttentionOptions(channels, Heads: 1, DimHead: channels)
        {
            Bias = true, GroupNormGroups = groups, NormEps = VaeNorm.Eps, ResidualConnection = true, Upcast = true,
        }));
        resnets = nn.ModuleList(
            new ResnetBlock2D(VaeNorm.Resnet(channels, channels, groups)),
            new ResnetBlock2D(VaeNorm.Resnet(channels, channels, groups)));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = resnets[0].call(input, null);
        h = attentions[0].call(h, null);
        h = resnets[1].call(h, null);
        return h.MoveToOuterDisposeScope();
    }
}
