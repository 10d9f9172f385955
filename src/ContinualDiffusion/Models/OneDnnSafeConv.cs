using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// Calls a convolution whose output channels are not a multiple of 16 (the UNet's `conv_out` has 4, the VAE's have
/// 3, 4 or 8) so that oneDNN's backward pass through it gives the right input gradient.
///
/// The bug (libtorch 2.10's oneDNN 3.7.1, this AVX-512 CPU): oneDNN keeps convolution tensors in blocks of 16
/// channels, and its backward-data pass through a convolution with 3, 4 or 8 output channels returns a wrong input
/// gradient: `scripts/bench.sh onednn-conv` (docs/results/onednn-conv-2026-12-07.txt), fp32, 30 random trials per shape,
/// the Fashion model's conv_out (32 → 4, 8×8, batch 8), SD 1.5's (320 → 4, 64×64, batch 1), a VAE-like 128 → 3 and
/// 64 → 8: every trial off libtorch's own kernel, by up to 45–51% of the gradient's largest value, silently (finite);
/// weight gradients, and a convolution with 4 input channels, are right;
/// the same convolution with 16 output channels, or padded as below: under 1e-6. Sometimes the wrong values are NaN:
/// that was fp32's sporadic NaN at batch ≥ 2 (Training/NonFiniteStepGuard) and bf16's NaN steps at 512² (autograd's
/// anomaly mode: the first function returning NaN was ConvolutionBackward0 of the UNet's conv_out; oneDNN verbose:
/// backward_data with the output gradient padded from 4 to 16 channels). Uninitialised block padding is the likely
/// mechanism, not proven. Measured effects: with this class the Fashion benchmark agrees with its oneDNN-off figures
/// within rounding noise (A within 0.2 points; without it, e.g. C-LoRA A 24.1% against 26.7%); bf16 training at 512² went from 13 non-finite steps in 24 to 0 in 24 (docs/results/bf16-cpu-2026-12-07.txt).
///
/// The workaround: weight and bias padded with zero output channels to the next multiple of 16, the output narrowed
/// back, so oneDNN receives a full block of real zeros. The kept channels are the same sums (equal to libtorch's own
/// kernel to about 4e-7); the added ones are never read. Only when a backward pass will need the input's gradient (autograd on, the input requires it, on the
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
    /// Only plain convolutions (one group, zero padding given as numbers), the only kind the models build: padding the
    /// output channels would move group boundaries, and another padding mode or a named padding would need its own call.
    internal static bool Pads(Conv2d conv, Tensor input) =>
        conv.weight!.shape[0] % Block != 0 && is_grad_enabled() && input.requires_grad && input.device_type == DeviceType.CPU
        && conv.groups == 1 && conv.padding_mode == PaddingModes.Zeros && conv.padding is not null;
}
