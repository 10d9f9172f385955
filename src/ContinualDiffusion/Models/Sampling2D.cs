using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers Downsample2D with use_conv=True (key `downsamplers.0.conv`): a 3x3 stride-2 conv. With padding 0
/// (the VAE encoder) diffusers first pads right and bottom by one, so odd/even sizes halve like the original LDM.
public sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly int _padding;

    public Downsample2D(int channels, int outChannels, int padding) : base(nameof(Downsample2D))
    {
        _padding = padding;
        conv = nn.Conv2d(channels, outChannels, 3, stride: 2, padding: padding);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        if (_padding != 0) return conv.call(input);
        using var padded = nn.functional.pad(input, (0, 1, 0, 1), PaddingModes.Constant, 0.0);
        return conv.call(padded);
    }
}

/// diffusers Upsample2D with use_conv=True (key `upsamplers.0.conv`): nearest-neighbour x2 (or to an explicit
/// size, which the UNet passes when the latent size is not a multiple of its total down-sampling), then a 3x3 conv.
public sealed class Upsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2D(int channels, int outChannels) : base(nameof(Upsample2D))
    {
        conv = nn.Conv2d(channels, outChannels, 3, stride: 1, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => forward(input, null);

    public Tensor forward(Tensor input, long[]? outputSize)
    {
        using var up = outputSize is null
            ? nn.functional.interpolate(input, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(input, size: outputSize, mode: InterpolationMode.Nearest);
        return conv.call(up);
    }
}
