using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Data;

/// Fashion-MNIST images as model inputs: 28×28 padded with background to 32×32 (the UNet/VAE halve the side
/// twice and more, so a power of two), scaled to [-1, 1] as diffusion models expect.
public static class FashionImages
{
    public const int Side = 32;
    private const int Pad = (Side - FashionMnist.Side) / 2;

    /// (N, channels, 32, 32) float32 in [-1, 1]; channels = 1 for the classifier, 3 for the RGB diffusion model.
    public static Tensor ToTensor(FashionMnist.Split split, IReadOnlyList<int> indices, int channels = 1)
    {
        var pixels = new byte[indices.Count * FashionMnist.Side * FashionMnist.Side];
        for (int k = 0; k < indices.Count; k++)
            split.Image(indices[k]).CopyTo(pixels.AsSpan(k * FashionMnist.Side * FashionMnist.Side));
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(pixels, [indices.Count, 1, FashionMnist.Side, FashionMnist.Side]).to_type(ScalarType.Float32);
        x = nn.functional.pad(x.DividedBy(127.5f).Minus(1f), [Pad, Pad, Pad, Pad], value: -1.0);
        if (channels > 1) x = x.expand(-1, channels, -1, -1).contiguous();
        return x.MoveToOuterDisposeScope();
    }

    /// RGB model output (N, 3, H, W) in [-1, 1] → the classifier's grey input (N, 1, H, W).
    public static Tensor ToGrey(Tensor rgb) => rgb.shape[1] == 1 ? rgb.alias() : rgb.mean([1], keepdim: true);
}
