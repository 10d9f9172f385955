using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// timm's `PatchEmbed`: a patch_size × patch_size convolution with stride patch_size, flattened to tokens.
public sealed class VitPatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d proj; // key: patch_embed.proj

    public VitPatchEmbed(VitConfig config) : base(nameof(VitPatchEmbed))
    {
        proj = nn.Conv2d(config.InChannels, config.EmbedDim, config.PatchSize, stride: config.PatchSize);
        RegisterComponents();
    }

    /// images [B, C, H, W] → tokens [B, H/p · W/p, dim]
    public override Tensor forward(Tensor images)
    {
        using var p = proj.forward(images);
        using var flat = p.flatten(2);
        return flat.transpose(1, 2).contiguous();
    }
}
