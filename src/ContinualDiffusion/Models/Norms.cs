using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;

namespace ContinualDiffusion.Models;

/// Normalisation layers initialised like PyTorch's.
internal static class Norms
{
    /// GroupNorm with weight = 1, bias = 0. TorchSharp 0.107's GroupNorm allocates its affine parameters with
    /// `torch.empty` and never initialises them, so a freshly built (not yet loaded) model could hold NaNs.
    public static GroupNorm Group(int groups, int channels, double eps)
    {
        var norm = torch.nn.GroupNorm(groups, channels, eps: eps, affine: true);
        using (torch.no_grad())
        {
            norm.weight!.FillInPlace(1.0);
            norm.bias!.FillInPlace(0.0);
        }
        return norm;
    }
}
