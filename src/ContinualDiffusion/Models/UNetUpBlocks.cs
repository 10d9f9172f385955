using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// A UNet decoder stage: each resnet consumes one skip tensor (taken from the end of `skips`, concatenated on
/// channels), then an optional x2 upsampler (to `upsampleSize` when the UNet has to force the size).
public abstract class UNetUpBlock(string name) : nn.Module(name)
{
    /// How many skip tensors this stage consumes (= its number of resnets).
    public abstract int SkipCount { get; }

    public abstract Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor context, long[]? upsampleSize);

    public virtual IEnumerable<(string Prefix, Attention Attention)> CrossAttentions() => [];

    /// Resnet j takes the previous width (block below for j = 0) plus the skip width: the skip of the last resnet
    /// comes from the down stage one level up (`InChannels`), the others from this level (`OutChannels`).
    protected static ResnetBlock2D[] Resnets(UNetBlockOptions o) =>
        Enumerable.Range(0, o.Layers).Select(j =>
        {
            int skip = j == o.Layers - 1 ? o.InChannels : o.OutChannels;
            int input = j == 0 ? o.PrevOutputChannels : o.OutChannels;
            return new ResnetBlock2D(o.Resnet(input + skip, o.OutChannels));
        }).ToArray();

    protected static Tensor Concat(Tensor hidden, IReadOnlyList<Tensor> skips, int consumed) =>
        torch.cat([hidden, skips[skips.Count - 1 - consumed]], dim: 1);
}

/// diffusers UpBlock2D: resnets over [hidden, skip] concatenations, optional upsampler.
public sealed class UpBlock2D : UNetUpBlock
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpBlock2D(UNetBlockOptions o) : base(nameof(UpBlock2D))
    {
        resnets = nn.ModuleList(Resnets(o));
        if (o.AddSampler) upsamplers = nn.ModuleList(new Upsample2D(o.OutChannels, o.OutChannels));
        RegisterComponents();
    }

    public override int SkipCount => resnets.Count;

    public override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor context, long[]? upsampleSize)
    {
        using var scope = torch.NewDisposeScope();
        for (int j = 0; j < resnets.Count; j++)
            hidden = resnets[j].call(Concat(hidden, skips, j), temb);
        if (upsamplers is not null) hidden = upsamplers[0].forward(hidden, upsampleSize);
        return hidden.MoveToOuterDisposeScope();
    }
}

/// diffusers CrossAttnUpBlock2D: (resnet over [hidden, skip] -> Transformer2DModel) x layers, optional upsampler.
public sealed class CrossAttnUpBlock2D : UNetUpBlock
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public CrossAttnUpBlock2D(UNetBlockOptions o) : base(nameof(CrossAttnUpBlock2D))
    {
        attentions = nn.ModuleList(Enumerable.Range(0, o.Layers).Select(_ => new Transformer2DModel(o.Transformer(o.OutChannels))).ToArray());
        resnets = nn.ModuleList(Resnets(o));
        if (o.AddSampler) upsamplers = nn.ModuleList(new Upsample2D(o.OutChannels, o.OutChannels));
        RegisterComponents();
    }

    public override int SkipCount => resnets.Count;

    public override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor context, long[]? upsampleSize)
    {
        using var scope = torch.NewDisposeScope();
        for (int j = 0; j < resnets.Count; j++)
            hidden = attentions[j].call(resnets[j].call(Concat(hidden, skips, j), temb), context);
        if (upsamplers is not null) hidden = upsamplers[0].forward(hidden, upsampleSize);
        return hidden.MoveToOuterDisposeScope();
    }

    public override IEnumerable<(string Prefix, Attention Attention)> CrossAttentions() => UNetBlockAttentions.Of(attentions);
}
