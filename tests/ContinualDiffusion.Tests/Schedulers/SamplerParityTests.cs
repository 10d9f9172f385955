using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Tests.Support;
using Xunit.Abstractions;
using static ContinualDiffusion.Tests.Schedulers.SchedulerFixtures;

namespace ContinualDiffusion.Tests.Schedulers;

/// The three samplers against diffusers 0.27.2 on the fixture's fake-model loop (rel. error <= 1e-4 per step).
public sealed class SamplerParityTests(ITestOutputHelper output)
{
    [Fact]
    public void Ddim_trajectory_matches_diffusers_for_20_steps()
    {
        using var scheduler = new DdimScheduler(BaseConfig());
        AssertTrajectoryMatches(scheduler, "ddim", output);
    }

    [Fact]
    public void Ddim_built_from_the_pipeline_scheduler_config_file_matches_diffusers()
    {
        var config = SchedulerConfig.Load(Path.Combine(Fixture.SdTiny, "scheduler", "scheduler_config.json"));
        using var scheduler = SchedulerFactory.Create(config);
        Assert.IsType<DdimScheduler>(scheduler);
        AssertTrajectoryMatches(scheduler, "ddim", output);
    }

    [Fact]
    public void Dpm_solver_2m_trajectory_and_sigmas_match_diffusers_for_15_steps()
    {
        using var scheduler = new DpmSolverMultistepScheduler(BaseConfig() with { AlgorithmType = "dpmsolver++", SolverOrder = 2 });
        AssertTrajectoryMatches(scheduler, "dpmpp2m", output);
        using var expected = Fixture.Ref("sched.dpmpp2m.sigmas");
        AssertSigmasEqual(scheduler.Sigmas, expected, output, "dpmpp2m");
    }

    [Fact]
    public void Dpm_solver_built_from_the_config_diffusers_resolved_matches_diffusers()
    {
        // schedulers.dpmpp2m.config is the full config diffusers resolved (lambda_min_clipped: -Infinity, extra DDIM keys).
        var config = SchedulerConfig.Parse(SchedulersJson.GetProperty("dpmpp2m").GetProperty("config").GetRawText(), "reference.json dpmpp2m.config");
        Assert.Equal(double.NegativeInfinity, config.LambdaMinClipped);
        using var scheduler = SchedulerFactory.Create(config, "dpm++");
        AssertTrajectoryMatches(scheduler, "dpmpp2m", output);
    }

    [Fact]
    public void Euler_trajectory_sigmas_and_init_noise_sigma_match_diffusers_for_15_steps()
    {
        using var scheduler = new EulerDiscreteScheduler(BaseConfig());
        AssertTrajectoryMatches(scheduler, "euler", output);
        using var expected = Fixture.Ref("sched.euler.sigmas");
        AssertSigmasEqual(scheduler.Sigmas, expected, output, "euler");
    }

    [Fact]
    public void Euler_built_from_the_config_diffusers_resolved_matches_diffusers()
    {
        var config = SchedulerConfig.Parse(SchedulersJson.GetProperty("euler").GetProperty("config").GetRawText(), "reference.json euler.config");
        using var scheduler = SchedulerFactory.Create(config, "euler");
        AssertTrajectoryMatches(scheduler, "euler", output);
    }

    [Fact]
    public void Dpm_solver_state_resets_so_a_second_trajectory_repeats_the_first()
    {
        using var scheduler = new DpmSolverMultistepScheduler(BaseConfig());
        double first = AssertTrajectoryMatches(scheduler, "dpmpp2m", output);
        double second = AssertTrajectoryMatches(scheduler, "dpmpp2m", output);
        Assert.Equal(first, second);
    }
}
