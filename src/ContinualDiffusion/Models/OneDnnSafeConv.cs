using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// Calls a convolution whose output channels are not a multiple of 16 (the UNet's `conv_out` has 4, the VAE's have
/// 3, 4 or 8) so that oneDNN's backward pass through it stays finite.
///
/// The bug (libtorch 2.10's oneDNN 3.7.1, this AVX-512 CPU): oneDNN keeps convolution tensors in blocks of 16
/// channels, so a 4-channel output gradient is handed to its backward-data kernel padded to 16; now and then the
/// input gradient comes back NaN although every value going in is finite. It comes and goes between runs of the same
/// seeded inputs (uninitialised padding read as 0 × NaN is the likely mechanism; not proven). Measured on the SD 1.5
/// architecture at 512², batch 1, oneDNN on: with autograd's anomaly mode, the first function returning NaN was the
/// backward of the UNet's `conv_out` (oneDNN verbose: `jit_bf16` backward_data, oc 4 padded), in two runs out of
/// two; without this class bf16 training dropped 10 of 11 steps in one run and 1 of 8 in another; with it 0 of 12
/// and 0 of 8 (also with anomaly mode on). The same signature — the UNet output's gradient finite, everything
/// upstream NaN — is fp32's sporadic NaN with batch ≥ 2 that Training/NonFiniteStepGuard retries.
///
/// The workaround: weight and bias padded with zero output channels to the next multiple of 16, the output narrowed
/// back, so oneDNN receives a full block of real zeros. The kept channels are the same sums; the added ones are
/// never read. Only when a backward pass will need the input's gradient (autograd on, the input requires it, on the
/// CPU): sampling and inference keep the plain call and its outputs.
public static class OneDnnSafeConv
{
    private const long Block = 16;

    public static Tensor Forward(Conv2d conv, Tensor input)
    {
        if (!Pads(conv, input)) return conv.call(input);
        using var scope = NewDisposeScope();
        var weight = conv.weight!;
        long outChannels = weight.shape[0];
        long extra = Block - outChannels % Block;
        var paddedWeight = nn.functional.pad(weight, [0, 0, 0, 0, 0, 0, 0, extra]);
        var paddedBias = conv.bias is { } bias ? nn.functional.pad(bias, [0, extra]) : null;
        var output = nn.functional.conv2d(input, paddedWeight, paddedBias, conv.stride, conv.padding, conv.dilation, conv.groups);
        return output.narrow(1, 0, outChannels).MoveToOuterDisposeScope();
    }

    /// Whether Forward takes the padded path for this input.
    internal static bool Pads(Conv2d conv, Tensor input) =>
        conv.weight!.shape[0] % Block != 0 && is_grad_enabled() && input.requires_grad && input.device_type == DeviceType.CPU;
}
