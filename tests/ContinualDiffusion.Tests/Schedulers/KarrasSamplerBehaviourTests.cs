using ContinualDiffusion.Schedulers;
using TorchSharp;
using static ContinualDiffusion.Tests.Schedulers.SchedulerFixtures;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Schedulers;

/// Euler and DPM-Solver++ cases beyond the fixture trajectory.
public sealed class KarrasSamplerBehaviourTests
{
    [Fact]
    public void Euler_leading_spacing_uses_sqrt_of_max_sigma_squared_plus_one_as_init_noise_sigma()
    {
        using var scheduler = new EulerDiscreteScheduler(BaseConfig() with { TimestepSpacing = "leading" });
        scheduler.SetTimesteps(10);
        Assert.Equal(Timestep.Float(901f), scheduler.Timesteps[0]);
        var acp = scheduler.Schedule.AlphasCumprod[901];
        float sigma = MathF.Sqrt((1 - acp) / acp);
        Assert.Equal(sigma, scheduler.Sigmas[0]);
        Assert.Equal(MathF.Sqrt(sigma * sigma + 1), (float)scheduler.InitNoiseSigma);
    }

    [Fact]
    public void Euler_scales_the_model_input_by_one_over_sqrt_sigma_squared_plus_one()
    {
        using var scope = NewDisposeScope();
        using var scheduler = new EulerDiscreteScheduler(BaseConfig());
        scheduler.SetTimesteps(15);
        float sigma = scheduler.Sigmas[0];
        var scaled = scheduler.ScaleModelInput(ones(2), scheduler.Timesteps[0]);
        Assert.Equal(1f / MathF.Sqrt(sigma * sigma + 1f), scaled.data<float>()[0], 1e-7f);
    }

    [Fact]
    public void Euler_rejects_a_timestep_that_is_not_in_its_schedule()
    {
        using var scope = NewDisposeScope();
        using var scheduler = new EulerDiscreteScheduler(BaseConfig());
        scheduler.SetTimesteps(15);
        Assert.Throws<ArgumentException>(() => scheduler.ScaleModelInput(ones(2), Timestep.Float(500.5f)));
    }

    [Fact]
    public void Dpm_solver_last_step_with_zero_final_sigma_returns_the_x0_prediction()
    {
        using var scope = NewDisposeScope();
        using var scheduler = new DpmSolverMultistepScheduler(BaseConfig());
        scheduler.SetTimesteps(5);
        Assert.Equal(0f, scheduler.Sigmas[^1]);
        var sample = tensor(new[] { 1f, -2f });
        var eps = tensor(new[] { 0.25f, 0.5f });
        Tensor result = sample;
        for (int k = 0; k < 5; k++) result = scheduler.Step(eps, scheduler.Timesteps[k], sample);
        // epsilon prediction: x0 = (x - sigma_t eps) / alpha_t at the last sigma.
        var (alpha, sigmaT) = (1f / MathF.Sqrt(scheduler.Sigmas[4] * scheduler.Sigmas[4] + 1f), 0f);
        sigmaT = scheduler.Sigmas[4] * alpha;
        Assert.Equal((1f - sigmaT * 0.25f) / alpha, result.data<float>()[0], 1e-5f);
    }

    [Fact]
    public void Dpm_solver_sigma_min_final_sigma_is_the_first_training_sigma()
    {
        using var scheduler = new DpmSolverMultistepScheduler(BaseConfig() with { FinalSigmasType = "sigma_min" });
        scheduler.SetTimesteps(10);
        var acp = scheduler.Schedule.AlphasCumprod[0];
        Assert.Equal(MathF.Sqrt((1 - acp) / acp), scheduler.Sigmas[^1]);
    }

    [Fact]
    public void Dpm_solver_leading_spacing_adds_steps_offset_and_skips_zero()
    {
        using var scheduler = new DpmSolverMultistepScheduler(BaseConfig() with { TimestepSpacing = "leading" });
        scheduler.SetTimesteps(9);
        // step ratio 1000 // 10 = 100: 900, 800, ..., 100, each + steps_offset 1.
        Assert.Equal(Enumerable.Range(0, 9).Select(i => 901L - 100 * i), scheduler.Timesteps.Select(t => t.AsInteger));
    }

    [Fact]
    public void Timestep_tensors_carry_diffusers_dtypes()
    {
        using var integer = Timestep.Integer(981).ToTensor();
        using var real = Timestep.Float(927.64288f).ToTensor();
        Assert.Equal(ScalarType.Int64, integer.dtype);
        Assert.Equal(0, integer.dim());
        Assert.Equal(981L, integer.item<long>());
        Assert.Equal(ScalarType.Float32, real.dtype);
        Assert.Equal(927.64288f, real.item<float>());
    }
}
