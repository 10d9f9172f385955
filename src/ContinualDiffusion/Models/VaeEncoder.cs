using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers `Encoder` (key prefix `encoder.`): conv_in -> DownEncoderBlock2D per level -> mid block ->
/// GroupNorm -> SiLU -> conv_out to 2 * latent_channels (mean and log-variance; double_z).
public sealed class VaeEncoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<DownEncoderBlock2D> down_blocks;
    private readonly UNetMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public VaeEncoder(VaeConfig config) : base(nameof(VaeEncoder))
    {
        int[] ch = config.BlockOutChannels;
        int n = ch.Length, groups = config.NormNumGroups;
        conv_in = nn.Conv2d(config.InChannels, ch[0], 3, stride: 1, padding: 1);
        down_blocks = nn.ModuleList(Enumerable.Range(0, n)
            .Select(i => new DownEncoderBlock2D(i == 0 ? ch[0] : ch[i - 1], ch[i], config.LayersPerBlock, groups, addDownsample: i < n - 1))
            .ToArray());
        mid_block = new UNetMidBlock2D(ch[^1], groups);
        conv_norm_out = Norms.Group(groups, ch[^1], VaeNorm.Eps);
        conv_out = nn.Conv2d(ch[^1], 2 * config.LatentChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor image)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv_in.call(image);
        foreach (var block in down_blocks) h = block.call(h);
        h = mid_block.call(h);
        h = OneDnnSafeConv.Forward(conv_out, nn.functional.silu(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }
}
