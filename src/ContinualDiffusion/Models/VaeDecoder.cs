using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers `Decoder` (key prefix `decoder.`): conv_in -> mid block -> UpDecoderBlock2D per level (widest
/// first, layers_per_block + 1 resnets each) -> GroupNorm -> SiLU -> conv_out.
public sealed class VaeDecoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<UpDecoderBlock2D> up_blocks;
    private readonly UNetMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public VaeDecoder(VaeConfig config) : base(nameof(VaeDecoder))
    {
        int[] ch = config.BlockOutChannels;
        int n = ch.Length, groups = config.NormNumGroups;
        conv_in = nn.Conv2d(config.LatentChannels, ch[^1], 3, stride: 1, padding: 1);
        // diffusers creates up_blocks (empty) before mid_block, so up_blocks comes first in its state dict order.
        up_blocks = nn.ModuleList(Enumerable.Range(0, n).Select(i =>
        {
            int prev = ch[n - 1 - Math.Max(i - 1, 0)], output = ch[n - 1 - i];
            return new UpDecoderBlock2D(prev, output, config.LayersPerBlock + 1, groups, addUpsample: i < n - 1);
        }).ToArray());
        mid_block = new UNetMidBlock2D(ch[^1], groups);
        conv_norm_out = Norms.Group(groups, ch[0], VaeNorm.Eps);
        conv_out = nn.Conv2d(ch[0], config.OutChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor latent)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv_in.call(latent);
        h = mid_block.call(h);
        foreach (var block in up_blocks) h = block.call(h);
        h = OneDnnSafeConv.Forward(conv_out, nn.functional.silu(conv_norm_out.call(h)));
        return h.MoveToOuterDisposeScope();
    }
}
