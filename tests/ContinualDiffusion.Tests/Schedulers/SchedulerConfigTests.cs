using ContinualDiffusion.Configuration;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Tests.Support;
using static ContinualDiffusion.Tests.Schedulers.SchedulerFixtures;

namespace ContinualDiffusion.Tests.Schedulers;

public sealed class SchedulerConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-sched-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string json)
    {
        var path = Path.Combine(_dir, $"scheduler_config_{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static string Sd15With(string extra) =>
        File.ReadAllText(Sd15ConfigPath).TrimEnd().TrimEnd('}').TrimEnd() + ",\n" + extra + "\n}";

    [Fact]
    public void Fixture_pipeline_scheduler_config_loads_as_ddim()
    {
        var path = Path.Combine(Fixture.SdTiny, "scheduler", "scheduler_config.json");
        var config = SchedulerConfig.Load(path);
        Assert.Equal("DDIMScheduler", config.ClassName);
        Assert.Equal("DDIMScheduler", SchedulerConfig.ReadClassName(path));
        Assert.Equal(path, config.Source);
        Assert.Equal("scaled_linear", config.BetaSchedule);
        Assert.Equal(0.00085, config.BetaStart);
        Assert.Equal(1, config.StepsOffset);
        Assert.Equal("leading", config.TimestepSpacing);
        Assert.False(config.SetAlphaToOne);
        Assert.Equal("ddim", SchedulerFactory.DefaultName(config));
    }

    [Fact]
    public void Sd15_pndm_config_loads_and_samples_with_ddim_by_default()
    {
        var config = SchedulerConfig.Load(Sd15ConfigPath);
        Assert.Equal("PNDMScheduler", config.ClassName);
        Assert.True(config.SkipPrkSteps);
        Assert.Null(config.TrainedBetas);
        Assert.Null(config.TimestepSpacing);
        using var scheduler = SchedulerFactory.Create(config);
        Assert.IsType<DdimScheduler>(scheduler);
    }

    [Fact]
    public void Samplers_built_from_the_sd15_config_use_their_own_class_default_spacing()
    {
        // As DPMSolverMultistepScheduler.from_config(pndm_config): timestep_spacing is not in the file -> linspace.
        var config = SchedulerConfig.Load(Sd15ConfigPath);
        using var dpm = SchedulerFactory.Create(config, "dpm++");
        dpm.SetTimesteps(20);
        Assert.Equal(Timestep.Integer(999), dpm.Timesteps[0]);
        using var euler = SchedulerFactory.Create(config, "euler");
        euler.SetTimesteps(20);
        Assert.Equal(Timestep.Float(999f), euler.Timesteps[0]);
        Assert.Equal(Timestep.Float(0f), euler.Timesteps[^1]);
    }

    [Fact]
    public void Unknown_key_is_rejected_naming_file_and_key()
    {
        var path = Write(Sd15With("\"karras_mode\": 3"));
        var e = Assert.Throws<ConfigException>(() => SchedulerConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("karras_mode", e.Message);
    }

    [Fact]
    public void Rescaled_zero_snr_betas_are_rejected_at_load()
    {
        var path = Write(Sd15With("\"rescale_betas_zero_snr\": true"));
        var e = Assert.Throws<ConfigException>(() => SchedulerConfig.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("rescale_betas_zero_snr", e.Message);
    }

    [Fact]
    public void Unknown_beta_schedule_is_rejected_listing_the_supported_ones()
    {
        var path = Write(File.ReadAllText(Sd15ConfigPath).Replace("\"scaled_linear\"", "\"sigmoid\""));
        var e = Assert.Throws<ConfigException>(() => SchedulerConfig.Load(path));
        Assert.Contains("beta_schedule", e.Message);
        Assert.Contains("squaredcos_cap_v2", e.Message);
    }

    [Fact]
    public void Thresholding_is_rejected_by_the_samplers_that_read_it()
    {
        var path = Write(Sd15With("\"thresholding\": true"));
        var config = SchedulerConfig.Load(path);
        var e = Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config, "ddim"));
        Assert.Contains(path, e.Message);
        Assert.Contains("'thresholding'", e.Message);
        Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config, "dpm++"));
        // EulerDiscreteScheduler has no thresholding key: diffusers ignores it, so do we.
        using var euler = SchedulerFactory.Create(config, "euler");
    }

    [Fact]
    public void Karras_sigmas_are_rejected_by_dpm_and_euler_but_ddim_still_samples()
    {
        var path = Write(Sd15With("\"use_karras_sigmas\": true, \"algorithm_type\": \"dpmsolver++\", \"lambda_min_clipped\": -Infinity"));
        var config = SchedulerConfig.Load(path);
        var e = Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config, "dpm++"));
        Assert.Contains(path, e.Message);
        Assert.Contains("use_karras_sigmas", e.Message);
        Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config, "euler"));
        using var ddim = SchedulerFactory.Create(config, "ddim");
    }

    [Fact]
    public void Sde_dpm_solver_is_rejected_naming_algorithm_type()
    {
        var config = SchedulerConfig.Load(Write(Sd15With("\"algorithm_type\": \"sde-dpmsolver++\"")));
        var e = Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config, "dpm++"));
        Assert.Contains("algorithm_type", e.Message);
    }

    [Fact]
    public void Unknown_sampler_name_lists_the_valid_names()
    {
        var e = Assert.Throws<ArgumentException>(() => SchedulerFactory.Create(BaseConfig(), "plms"));
        Assert.Contains("plms", e.Message);
        Assert.Contains("ddim, dpm++, euler", e.Message);
    }

    [Fact]
    public void Config_class_without_a_sampler_requires_an_explicit_name()
    {
        var path = Write(File.ReadAllText(Sd15ConfigPath).Replace("PNDMScheduler", "LMSDiscreteScheduler"));
        var config = SchedulerConfig.Load(path);
        var e = Assert.Throws<ConfigException>(() => SchedulerFactory.Create(config));
        Assert.Contains("_class_name", e.Message);
        Assert.Contains("LMSDiscreteScheduler", e.Message);
        using var explicitly = SchedulerFactory.Create(config, "euler");
    }

    [Theory]
    [InlineData("DDIMScheduler", "ddim")]
    [InlineData("PNDMScheduler", "ddim")]
    [InlineData("DDPMScheduler", "ddim")]
    [InlineData("DPMSolverMultistepScheduler", "dpm++")]
    [InlineData("EulerDiscreteScheduler", "euler")]
    public void Diffusers_scheduler_classes_map_to_a_default_sampler(string className, string sampler) =>
        Assert.Equal(sampler, SchedulerFactory.NameForClass(className));

    [Fact]
    public void Python_non_finite_literals_are_quoted_outside_strings_only()
    {
        const string json = "{\"a\": \"NaN -Infinity\", // Infinity \"x\n \"b\": -Infinity, \"c\": [NaN, Infinity]}";
        Assert.Equal("{\"a\": \"NaN -Infinity\", // Infinity \"x\n \"b\": \"-Infinity\", \"c\": [\"NaN\", \"Infinity\"]}",
            PythonJson.QuoteNonFiniteNumbers(json));
    }
}
