using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// A UNet encoder stage: returns the stage output and the skip tensors the decoder concatenates
/// (one per resnet, plus the downsampled output when there is a downsampler), in diffusers' order.
public abstract class UNetDownBlock(string name) : nn.Module(name)
{
    public abstract (Tensor Hidden, List<Tensor> Skips) forward(Tensor hidden, Tensor temb, Tensor context);

    /// Cross-attention layers of this block with their state-dict prefix relative to the block.
    public virtual IEnumerable<(string Prefix, Attention Attention)> CrossAttentions() => [];
}

/// diffusers DownBlock2D: resnets, optional downsampler (keys `resnets.N`, `downsamplers.0.conv`).
public sealed class DownBlock2D : UNetDownBlock
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownBlock2D(UNetBlockOptions o) : base(nameof(DownBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, o.Layers)
            .Select(i => new ResnetBlock2D(o.Resnet(i == 0 ? o.InChannels : o.OutChannels, o.OutChannels))).ToArray());
        if (o.AddSampler) downsamplers = nn.ModuleList(new Downsample2D(o.OutChannels, o.OutChannels, o.DownsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, List<Tensor> Skips) forward(Tensor hidden, Tensor temb, Tensor context)
    {
        var skips = new List<Tensor>();
        foreach (var resnet in resnets)
        {
            hidden = resnet.call(hidden, temb);
            skips.Add(hidden);
        }
        if (downsamplers is not null)
        {
            hidden = downsamplers[0].call(hidden);
            skips.Add(hidden);
        }
        return (hidden, skips);
    }
}

/// diffusers CrossAttnDownBlock2D: (resnet -> Transformer2DModel) x layers, optional downsampler.
public sealed class CrossAttnDownBlock2D : UNetDownBlock
{
    private readonly ModuleList<Transformer2DModel> attentions;
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public CrossAttnDownBlock2D(UNetBlockOptions o) : base(nameof(CrossAttnDownBlock2D))
    {
        // Field order = diffusers' registration order (attentions before resnets), so parameters enumerate alike.
        attentions = nn.ModuleList(Enumerable.Range(0, o.Layers).Select(_ => new Transformer2DModel(o.Transformer(o.OutChannels))).ToArray());
        resnets = nn.ModuleList(Enumerable.Range(0, o.Layers)
            .Select(i => new ResnetBlock2D(o.Resnet(i == 0 ? o.InChannels : o.OutChannels, o.OutChannels))).ToArray());
        if (o.AddSampler) downsamplers = nn.ModuleList(new Downsample2D(o.OutChannels, o.OutChannels, o.DownsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, List<Tensor> Skips) forward(Tensor hidden, Tensor temb, Tensor context)
    {
        var skips = new List<Tensor>();
        for (int i = 0; i < resnets.Count; i++)
        {
            using var h = resnets[i].call(hidden, temb);
            hidden = attentions[i].call(h, context);
            skips.Add(hidden);
        }
        if (downsamplers is not null)
        {
            hidden = downsamplers[0].call(hidden);
            skips.Add(hidden);
        }
        return (hidden, skips);
    }

    public override IEnumerable<(string Prefix, Attention Attention)> CrossAttentions() =>
        UNetBlockAttentions.Of(attentions);
}

internal static class UNetBlockAttentions
{
    /// `attentions.{i}.transformer_blocks.{k}.attn2` for every transformer block, in index order.
    public static IEnumerable<(string Prefix, Attention Attention)> Of(IEnumerable<Transformer2DModel> attentions) =>
        attentions.SelectMany((t, i) => t.TransformerBlocks.Select((block, k) => ($"attentions.{i}.transformer_blocks.{k}.attn2", block.Attn2)));
}
