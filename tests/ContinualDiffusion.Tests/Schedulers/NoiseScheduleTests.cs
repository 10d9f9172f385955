using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static ContinualDiffusion.Tests.Schedulers.SchedulerFixtures;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Schedulers;

public sealed class NoiseScheduleTests(ITestOutputHelper output)
{
    private static NoiseSchedule TrainSchedule() =>
        new(SchedulerConfig.Parse(Fixture.ReferenceJson.GetProperty("train").GetProperty("scheduler_config").GetRawText(), "reference.json train.scheduler_config"));

    [Fact]
    public void Alphas_cumprod_of_the_scaled_linear_schedule_equal_diffusers_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        var actual = TrainSchedule().AlphasCumprodTensor();
        var expected = Fixture.Ref("train.alphas_cumprod");
        double maxAbs = (actual - expected).abs().max().item<float>();
        output.WriteLine($"alphas_cumprod: max |diff| {maxAbs:E3}, relative {Fixture.RelError(actual, expected):E3}");
        Assert.Equal(expected.data<float>().ToArray(), actual.data<float>().ToArray());
    }

    [Fact]
    public void Add_noise_matches_diffusers_per_sample_timestep()
    {
        using var scope = NewDisposeScope();
        var noisy = TrainSchedule().AddNoise(Fixture.Ref("train.x0"), Fixture.Ref("train.noise"), Fixture.Ref("train.timesteps"));
        output.WriteLine($"add_noise relative error {Fixture.RelError(noisy, Fixture.Ref("train.noisy")):E3}");
        Fixture.AssertClose(noisy, Fixture.Ref("train.noisy"), what: "train.noisy");
    }

    [Fact]
    public void Velocity_matches_diffusers_get_velocity()
    {
        using var scope = NewDisposeScope();
        var v = TrainSchedule().GetVelocity(Fixture.Ref("train.x0"), Fixture.Ref("train.noise"), Fixture.Ref("train.timesteps"));
        output.WriteLine($"get_velocity relative error {Fixture.RelError(v, Fixture.Ref("train.velocity")):E3}");
        Fixture.AssertClose(v, Fixture.Ref("train.velocity"), what: "train.velocity");
    }

    [Theory]
    [InlineData("epsilon", "train.noise")]
    [InlineData("v_prediction", "train.velocity")]
    [InlineData("sample", "train.x0")]
    public void Training_target_follows_the_prediction_type(string predictionType, string expectedTensor)
    {
        using var scope = NewDisposeScope();
        var schedule = new NoiseSchedule(BaseConfig() with { PredictionType = predictionType });
        var target = schedule.TrainingTarget(Fixture.Ref("train.x0"), Fixture.Ref("train.noise"), Fixture.Ref("train.timesteps"));
        Fixture.AssertClose(target, Fixture.Ref(expectedTensor), what: predictionType);
    }

    [Fact]
    public void Linear_schedule_starts_and_ends_at_beta_start_and_beta_end()
    {
        var schedule = new NoiseSchedule(BaseConfig() with { BetaSchedule = "linear", BetaStart = 0.0001, BetaEnd = 0.02 });
        Assert.Equal(0.0001f, schedule.Betas[0]);
        Assert.Equal(0.02f, schedule.Betas[^1]);
        Assert.Equal(1f - 0.0001f, schedule.AlphasCumprod[0]);
    }

    [Fact]
    public void Cosine_schedule_follows_alpha_bar_and_caps_beta_at_0_999()
    {
        var schedule = new NoiseSchedule(BaseConfig() with { BetaSchedule = "squaredcos_cap_v2" });
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        Assert.Equal((float)(1 - AlphaBar(0.001) / AlphaBar(0)), schedule.Betas[0]);
        Assert.Equal(0.999f, schedule.Betas[^1]);
        Assert.True(schedule.Betas.Zip(schedule.Betas.Skip(1)).All(p => p.First <= p.Second), "cosine betas must not decrease");
    }

    [Fact]
    public void Trained_betas_take_precedence_over_the_beta_schedule()
    {
        var betas = Enumerable.Range(0, 10).Select(i => 0.01 + 0.001 * i).ToArray();
        var schedule = new NoiseSchedule(BaseConfig() with { NumTrainTimesteps = 10, TrainedBetas = betas });
        Assert.Equal(betas.Select(b => (float)b), schedule.Betas);
    }

    [Fact]
    public void Add_noise_rejects_a_timestep_outside_the_training_range()
    {
        using var scope = NewDisposeScope();
        var schedule = TrainSchedule();
        var x = zeros(1, 4, 2, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => schedule.AddNoise(x, x, tensor(new long[] { 1000 })));
    }
}
