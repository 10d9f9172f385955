using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// Min-SNR weights on sd-tiny's schedule (scaled_linear 0.00085-0.012, 1000 steps), against values worked out
/// independently in float64 (Python: betas = linspace(√0.00085, √0.012, 1000)², ᾱ = cumprod(1 − β), SNR = ᾱ/(1 − ᾱ)),
/// γ = 5; relative tolerance 1e-4 (the schedule is float32, as diffusers').
public class MinSnrWeightingTests
{
    private static NoiseSchedule Schedule(string prediction) =>
        new(SchedulerConfig.Load(Path.Combine(Fixture.SdTiny, "scheduler", "scheduler_config.json")) with { PredictionType = prediction });

    [Theory]
    [InlineData("epsilon", new[] { 0.004253615573237339, 1.0, 1.0 })]
    [InlineData("v_prediction", new[] { 0.004250000000000087, 0.6737926252333215, 0.004660098513077233 })]
    [InlineData("sample", new[] { 5.0, 2.0655346180179253, 0.004681916706157952 })]
    public void Weights_at_t_0_250_999_match_the_formula(string prediction, double[] expected)
    {
        using var scope = torch.NewDisposeScope();
        var w = MinSnrWeighting.Weights(Schedule(prediction), torch.tensor(new long[] { 0, 250, 999 }), 5).data<float>().ToArray();
        for (int i = 0; i < 3; i++) Assert.True(Math.Abs(w[i] - expected[i]) <= 1e-4 * expected[i], $"{prediction} weight {i}: {w[i]} vs {expected[i]}");
    }

    [Fact]
    public void The_loss_is_the_mean_of_the_weighted_per_sample_errors()
    {
        using var scope = torch.NewDisposeScope();
        using var gen = new Generator(3);
        var pred = torch.randn([2, 4, 8, 8], generator: gen);
        var target = torch.randn([2, 4, 8, 8], generator: gen);
        Fixture.AssertClose(MinSnrWeighting.Loss(pred, target, torch.ones(2)), nn.functional.mse_loss(pred, target), 1e-6, "weights 1");
        double e0 = nn.functional.mse_loss(pred[0], target[0]).item<float>(), e1 = nn.functional.mse_loss(pred[1], target[1]).item<float>();
        double weighted = MinSnrWeighting.Loss(pred, target, torch.tensor(new[] { 0.25f, 2f })).item<float>();
        Assert.Equal((0.25 * e0 + 2 * e1) / 2, weighted, 1e-5);
    }
}
