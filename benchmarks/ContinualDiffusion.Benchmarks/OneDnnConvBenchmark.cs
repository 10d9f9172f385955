using System.Globalization;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarks;

/// `scripts/bench.sh onednn-conv [--trials 30]`: is oneDNN's backward through few-channel convolutions still wrong on
/// this libtorch? For each shape, the input gradient of a convolution computed three ways — libtorch's own kernel
/// (oneDNN off), oneDNN as called plainly, and oneDNN through Models/OneDnnSafeConv (output channels padded to 16) —
/// and the worst difference from the first, as a share of its largest value, over random inputs and output gradients;
/// the same for the weight's gradient. fp32 only (the bf16 NaNs were traced with autograd's anomaly mode instead).
/// The plain line staying near 1e-7 on a new libtorch means OneDnnSafeConv can go.
public static class OneDnnConvBenchmark
{
    public static int Run(string[] args)
    {
        int trials = BenchOptions.Parse("onednn-conv", args, "trials").Int("trials", 30);
        TorchSetup.Initialize();
        if (!TorchSetup.MkldnnEnabled()) { Console.Error.WriteLine("oneDNN is not available in this libtorch: nothing to compare"); return 2; }
        Console.WriteLine($"input gradient vs libtorch's own kernel, worst of {trials} random trials (share of its largest value); torch threads {torch.get_num_threads()}");
        using var generator = new Generator(1);
        // (in channels, out channels, latent side, batch): the Fashion model's conv_out at its training batch, SD 1.5's at 512², a whole block.
        // Also: 4 input channels (the VAE decoder's conv_in, whose input gradient pretraining needs), 8 output channels
        // (the VAE encoder's conv_out), and whole blocks for comparison.
        foreach (var (cin, cout, side, batch) in new[] { (32L, 4L, 8L, 8L), (320L, 4L, 64L, 1L), (128L, 3L, 32L, 2L), (64L, 8L, 8L, 8L), (4L, 64L, 8L, 8L), (32L, 16L, 8L, 8L) })
        {
            using var conv = nn.Conv2d(cin, cout, 3, padding: 1);
            double plainWorst = 0, paddedWorst = 0, weightPlainWorst = 0, weightPaddedWorst = 0;
            int plainNaN = 0, plainOff = 0;
            for (int i = 0; i < trials; i++)
            {
                using var scope = torch.NewDisposeScope();
                var x = torch.randn([batch, cin, side, side], generator: generator);
                var upstream = torch.randn([batch, cout, side, side], generator: generator);
                Tensor native, nativeWeight;
                using (TorchSetup.SuspendMkldnn()) (native, nativeWeight) = Gradients(conv, x, upstream, padded: false);
                var (plain, plainWeight) = Gradients(conv, x, upstream, padded: false);
                var (padded, paddedWeight) = Gradients(conv, x, upstream, padded: true);
                double weightScale = nativeWeight.abs().max().item<float>();
                if (plainWeight.isfinite().all().item<bool>())
                    weightPlainWorst = Math.Max(weightPlainWorst, (plainWeight - nativeWeight).abs().max().item<float>() / weightScale);
                weightPaddedWorst = Math.Max(weightPaddedWorst, (paddedWeight - nativeWeight).abs().max().item<float>() / weightScale);
                double scale = native.abs().max().item<float>();
                if (!plain.isfinite().all().item<bool>()) plainNaN++;
                else
                {
                    double error = (plain - native).abs().max().item<float>() / scale;
                    plainWorst = Math.Max(plainWorst, error);
                    if (error > 1e-4) plainOff++;
                }
                paddedWorst = Math.Max(paddedWorst, (padded - native).abs().max().item<float>() / scale);
            }
            Console.WriteLine($"conv {cin}->{cout}, {side}x{side}, batch {batch}: oneDNN plain {plainWorst:E2} ({plainOff} of {trials} off by more than 1e-4" +
                (plainNaN > 0 ? $", {plainNaN} NaN" : "") + $"), oneDNN padded (OneDnnSafeConv) {paddedWorst:E2}; " +
                $"weight gradient: plain {weightPlainWorst:E2}, padded {weightPaddedWorst:E2}");
        }
        return 0;
    }

    /// The input's and the weight's gradient of sum(conv(x) * upstream).
    private static (Tensor Input, Tensor Weight) Gradients(TorchSharp.Modules.Conv2d conv, Tensor x, Tensor upstream, bool padded)
    {
        var input = x.detach().requires_grad_(true);
        var output = padded ? OneDnnSafeConv.Forward(conv, input) : conv.call(input);
        (output * upstream).sum().backward();
        var result = (input.grad!.detach().clone(), conv.weight!.grad!.detach().clone());
        conv.zero_grad();
        return result;
    }
}
