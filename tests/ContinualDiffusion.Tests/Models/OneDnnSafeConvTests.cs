using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// The padded path (the workaround for oneDNN's wrong backward through few-channel convolutions) must compute what the
/// plain call computes, forward and backward, and must be left alone where no gradient flows (sampling keeps its
/// outputs) and for convolutions it cannot pad exactly. The test host runs with oneDNN off: this checks the arithmetic
/// of the workaround, not the bug (`scripts/bench.sh onednn-conv` measures that); OneDnnSafeCallSitesTests checks that
/// the models use it.
public class OneDnnSafeConvTests
{
    public static TheoryData<long, long, long, long, long, bool> Shapes => new()
    {
        // in, out, kernel, stride, dilation, bias
        { 8, 4, 3, 1, 1, true },   // the UNet's conv_out
        { 6, 3, 3, 2, 1, true },   // a VAE decoder's conv_out, strided
        { 5, 8, 1, 1, 1, false },  // quant_conv-like 1×1, no bias
        { 4, 7, 3, 1, 2, true },   // dilated
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Padded_path_matches_the_plain_convolution_in_outputs_and_all_gradients(long cin, long cout, long k, long stride, long dilation, bool bias)
    {
        using var scope = torch.NewDisposeScope();
        using var conv = nn.Conv2d(cin, cout, k, stride: stride, padding: dilation * (k - 1) / 2, dilation: dilation, bias: bias);
        using var generator = new Generator(3);
        var x = torch.randn([2, cin, 9, 11], generator: generator);

        var (plainOut, plainInputGrad, plainWeightGrad, plainBiasGrad) = Run(conv, x, padded: false);
        var (safeOut, safeInputGrad, safeWeightGrad, safeBiasGrad) = Run(conv, x, padded: true);

        Assert.Equal(plainOut.shape, safeOut.shape);
        Close(plainOut, safeOut, "outputs");
        Close(plainInputGrad, safeInputGrad, "input gradients");
        Close(plainWeightGrad, safeWeightGrad, "weight gradients");
        Assert.Equal(bias, safeBiasGrad is not null);
        if (bias) Close(plainBiasGrad!, safeBiasGrad!, "bias gradients");
    }

    /// float32 sums in another order: agree to 1e-5 of the largest magnitude.
    private static void Close(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = expected.abs().max().item<float>(), diff = (actual - expected).abs().max().item<float>();
        Assert.True(diff <= 1e-5 * scale, $"{what} differ by {diff} (largest {scale})");
    }

    private static (Tensor Output, Tensor InputGrad, Tensor WeightGrad, Tensor? BiasGrad) Run(TorchSharp.Modules.Conv2d conv, Tensor x, bool padded)
    {
        conv.zero_grad();
        var input = x.detach().requires_grad_(true);
        Assert.True(OneDnnSafeConv.Pads(conv, input)); // every shape here has channels to pad
        var output = padded ? OneDnnSafeConv.Forward(conv, input) : conv.call(input);
        using var generator = new Generator(11);
        var upstream = torch.randn(output.shape, generator: generator);
        (output * upstream).sum().backward();
        return (output.detach(), input.grad!.clone(), conv.weight!.grad!.clone(), conv.bias?.grad?.clone());
    }

    [Fact]
    public void Without_a_gradient_to_compute_the_plain_call_is_used_and_its_output_kept_bit_for_bit()
    {
        using var scope = torch.NewDisposeScope();
        using var conv = nn.Conv2d(8, 4, 3, padding: 1);
        using var generator = new Generator(5);
        var x = torch.randn([1, 8, 6, 6], generator: generator);
        Assert.False(OneDnnSafeConv.Pads(conv, x)); // input does not require grad (weights do: only their gradient is needed)
        Assert.True(OneDnnSafeConv.Forward(conv, x).eq(conv.call(x)).all().item<bool>());
        var tracked = x.detach().requires_grad_(true);
        using (torch.no_grad())
        {
            Assert.False(OneDnnSafeConv.Pads(conv, tracked)); // sampling
            Assert.True(OneDnnSafeConv.Forward(conv, tracked).eq(conv.call(tracked)).all().item<bool>());
        }
        using var wide = nn.Conv2d(8, 16, 3, padding: 1);
        Assert.False(OneDnnSafeConv.Pads(wide, tracked)); // already whole blocks
        Assert.True(OneDnnSafeConv.Pads(conv, tracked));
        using var grouped = nn.Conv2d(8, 4, 3, padding: 1, groups: 2);
        Assert.False(OneDnnSafeConv.Pads(grouped, tracked)); // padding would move the group boundaries
        using var reflected = nn.Conv2d(8, 4, 3, padding: 1, padding_mode: PaddingModes.Reflect);
        Assert.False(OneDnnSafeConv.Pads(reflected, tracked));
    }
}
