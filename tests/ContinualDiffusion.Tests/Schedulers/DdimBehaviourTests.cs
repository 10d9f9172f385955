using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using TorchSharp;
using static ContinualDiffusion.Tests.Schedulers.SchedulerFixtures;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Schedulers;

/// DDIM cases the fixture trajectory does not cover: prediction types, spacings, final alpha, clipping.
public sealed class DdimBehaviourTests
{
    private static readonly float[] Sample = [1.0f, -2.0f, 0.5f];
    private static readonly float[] ModelOutput = [0.3f, 0.7f, -1.1f];

    private static float[] StepOnce(SchedulerConfig config, int steps, int index)
    {
        using var scope = NewDisposeScope();
        using var scheduler = new DdimScheduler(config);
        scheduler.SetTimesteps(steps);
        return scheduler.Step(tensor(ModelOutput), scheduler.Timesteps[index], tensor(Sample)).data<float>().ToArray();
    }

    [Fact]
    public void V_prediction_step_equals_the_ddim_formula_on_a_hand_example()
    {
        var config = BaseConfig() with { PredictionType = "v_prediction" };
        var acp = new NoiseSchedule(config).AlphasCumprod;
        // 50 leading steps with steps_offset 1: t = 981, previous t = 981 - 1000 / 50 = 961.
        double a = acp[981], aPrev = acp[961];
        var expected = Sample.Zip(ModelOutput, (x, v) =>
        {
            double x0 = Math.Sqrt(a) * x - Math.Sqrt(1 - a) * v;
            double eps = Math.Sqrt(a) * v + Math.Sqrt(1 - a) * x;
            return (float)(Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * eps);
        }).ToArray();

        var actual = StepOnce(config, 50, 0);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 5e-6f);
        var asEpsilon = StepOnce(config with { PredictionType = "epsilon" }, 50, 0);
        Assert.True(Math.Abs(asEpsilon[0] - actual[0]) > 1e-3, "v_prediction must differ from epsilon on this example");
    }

    [Fact]
    public void Sample_prediction_step_moves_towards_the_predicted_x0()
    {
        var config = BaseConfig() with { PredictionType = "sample" };
        var acp = new NoiseSchedule(config).AlphasCumprod;
        double a = acp[981], aPrev = acp[961];
        var actual = StepOnce(config, 50, 0);
        for (int i = 0; i < Sample.Length; i++)
        {
            double eps = (Sample[i] - Math.Sqrt(a) * ModelOutput[i]) / Math.Sqrt(1 - a);
            Assert.Equal((float)(Math.Sqrt(aPrev) * ModelOutput[i] + Math.Sqrt(1 - aPrev) * eps), actual[i], 5e-6f);
        }
    }

    [Fact]
    public void Sd15_leading_spacing_with_steps_offset_starts_at_981_for_50_steps()
    {
        using var scheduler = new DdimScheduler(SchedulerConfig.Load(Sd15ConfigPath));
        scheduler.SetTimesteps(50);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => 981.0 - 20 * i), scheduler.Timesteps.Select(t => t.Value));
        Assert.All(scheduler.Timesteps, t => Assert.True(t.IsInteger));
    }

    [Fact]
    public void Trailing_spacing_ends_at_the_last_training_timestep()
    {
        using var scheduler = new DdimScheduler(BaseConfig() with { TimestepSpacing = "trailing" });
        scheduler.SetTimesteps(10);
        Assert.Equal(new long[] { 999, 899, 799, 699, 599, 499, 399, 299, 199, 99 }, scheduler.Timesteps.Select(t => t.AsInteger));
        scheduler.SetTimesteps(3);
        // np.round(np.arange(1000, 0, -333.33)) - 1
        Assert.Equal(new long[] { 999, 666, 332 }, scheduler.Timesteps.Select(t => t.AsInteger));
    }

    [Fact]
    public void Linspace_spacing_spans_zero_to_the_last_training_timestep()
    {
        using var scheduler = new DdimScheduler(BaseConfig() with { TimestepSpacing = "linspace" });
        scheduler.SetTimesteps(10);
        Assert.Equal(new long[] { 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 }, scheduler.Timesteps.Select(t => t.AsInteger));
    }

    [Fact]
    public void Set_alpha_to_one_makes_the_last_step_return_the_predicted_x0()
    {
        var config = BaseConfig() with { SetAlphaToOne = true };
        float a = new NoiseSchedule(config).AlphasCumprod[1];   // last of 50 leading steps is t = 1
        var last = StepOnce(config, 50, 49);
        for (int i = 0; i < Sample.Length; i++)
            Assert.Equal((Sample[i] - MathF.Sqrt(1 - a) * ModelOutput[i]) / MathF.Sqrt(a), last[i], 1e-5f);
        var withoutOne = StepOnce(config with { SetAlphaToOne = false }, 50, 49);
        Assert.NotEqual(last[0], withoutOne[0]);
    }

    [Fact]
    public void Clip_sample_defaults_to_true_for_ddim_when_the_config_does_not_say()
    {
        // Predicting x0 = 5 with a final alpha of one: clipping returns exactly the clip range.
        var config = BaseConfig() with { PredictionType = "sample", SetAlphaToOne = true, ClipSample = null, ClipSampleRange = 1.5 };
        using var scope = NewDisposeScope();
        using var scheduler = new DdimScheduler(config);
        scheduler.SetTimesteps(50);
        var result = scheduler.Step(OwnedScalars.Full([3], 5f), scheduler.Timesteps[49], tensor(Sample));
        Assert.Equal([1.5f, 1.5f, 1.5f], result.data<float>().ToArray());
        using var unclipped = new DdimScheduler(config with { ClipSample = false });
        unclipped.SetTimesteps(50);
        Assert.Equal([5f, 5f, 5f], unclipped.Step(OwnedScalars.Full([3], 5f), unclipped.Timesteps[49], tensor(Sample)).data<float>().ToArray());
    }

    [Fact]
    public void Step_before_set_timesteps_is_an_error()
    {
        using var scope = NewDisposeScope();
        using var scheduler = new DdimScheduler(BaseConfig());
        Assert.Throws<InvalidOperationException>(() => scheduler.Step(zeros(1), Timestep.Integer(981), zeros(1)));
    }
}
