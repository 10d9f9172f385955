namespace ContinualDiffusion.Models;

/// What get_down_block / get_up_block pass to one UNet block. `PrevOutputChannels` is used by up blocks only
/// (the width coming from the block below); the skip widths are derived the way diffusers derives them.
public sealed record UNetBlockOptions
{
    public required int InChannels { get; init; }
    public required int OutChannels { get; init; }
    public int PrevOutputChannels { get; init; }
    public required int TembChannels { get; init; }
    public required int Layers { get; init; }
    public required int Groups { get; init; }
    public required double Eps { get; init; }
    public double OutputScaleFactor { get; init; } = 1.0;
    public double Dropout { get; init; }
    /// Down blocks: add a stride-2 downsampler; up blocks: add a x2 upsampler.
    public bool AddSampler { get; init; }
    public int DownsamplePadding { get; init; } = 1;

    // Cross-attention blocks only.
    public int Heads { get; init; } = 1;
    public int TransformerLayers { get; init; } = 1;
    public int CrossAttentionDim { get; init; }
    public bool UseLinearProjection { get; init; }
    public bool UpcastAttention { get; init; }

    public ResnetOptions Resnet(int inChannels, int outChannels) =>
        new(inChannels, outChannels, TembChannels, Groups, Eps) { OutputScaleFactor = OutputScaleFactor, Dropout = Dropout };

    public TransformerOptions Transformer(int channels) =>
        new(channels, Heads, CrossAttentionDim, Groups)
        {
            Layers = TransformerLayers, UseLinearProjection = UseLinearProjection, UpcastAttention = UpcastAttention,
        };
}
