using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Sampling;

/// Guidance and Lin et al.'s rescale against diffusers' formulas (pipeline_stable_diffusion.py: the guided
/// prediction, and rescale_noise_cfg), computed here in float64 element by element; tolerance 1e-5 (float32).
public class ClassifierFreeGuidanceTests
{
    private static (Tensor Uncond, Tensor Text) Predictions()
    {
        using var gen = new Generator(7);
        var uncond = torch.randn([3, 4, 5, 5], generator: gen);
        var text = torch.randn([3, 4, 5, 5], generator: gen).Times(1.7);
        return (uncond, text);
    }

    [Fact]
    public void Without_rescale_it_is_uncond_plus_scale_times_the_difference()
    {
        using var scope = torch.NewDisposeScope();
        var (u, t) = Predictions();
        var guided = ClassifierFreeGuidance.Combine(u, t, 7.5, 0).data<float>().ToArray();
        var ud = u.data<float>().ToArray();
        var td = t.data<float>().ToArray();
        for (int i = 0; i < guided.Length; i++)
            Assert.Equal(ud[i] + 7.5 * (td[i] - ud[i]), guided[i], 1e-5);
    }

    [Theory]
    [InlineData(0.7)]
    [InlineData(1.0)]
    public void Rescale_matches_diffusers_rescale_noise_cfg(double phi)
    {
        using var scope = torch.NewDisposeScope();
        var (u, t) = Predictions();
        var got = ClassifierFreeGuidance.Combine(u, t, 7.5, phi).data<float>().ToArray();
        var ud = u.data<float>().ToArray();
        var td = t.data<float>().ToArray();
        int per = got.Length / 3;
        for (int n = 0; n < 3; n++)
        {
            var cfg = Enumerable.Range(n * per, per).Select(i => ud[i] + 7.5 * (td[i] - ud[i])).ToArray();
            var text = Enumerable.Range(n * per, per).Select(i => (double)td[i]).ToArray();
            double ratio = Std(text) / Std(cfg);
            for (int j = 0; j < per; j++)
                Assert.Equal(phi * cfg[j] * ratio + (1 - phi) * cfg[j], got[n * per + j], 1e-4);
        }
    }

    [Fact]
    public void Full_rescale_gives_each_sample_the_spread_of_its_text_prediction()
    {
        using var scope = torch.NewDisposeScope();
        var (u, t) = Predictions();
        var got = ClassifierFreeGuidance.Combine(u, t, 7.5, 1.0);
        var gotStd = got.std([1, 2, 3], true, false).data<float>().ToArray();
        var textStd = t.std([1, 2, 3], true, false).data<float>().ToArray();
        var plainStd = ClassifierFreeGuidance.Combine(u, t, 7.5, 0).std([1, 2, 3], true, false).data<float>().ToArray();
        for (int n = 0; n < 3; n++)
        {
            Assert.Equal(textStd[n], gotStd[n], 1e-4);
            Assert.True(plainStd[n] > 2 * textStd[n], "plain guidance at 7.5 widens the prediction (else the test shows nothing)");
        }
    }

    private static double Std(double[] x)
    {
        double mean = x.Average();
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
    }
}
