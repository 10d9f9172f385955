using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Schedulers;

/// Builds a sampler from a scheduler config, like diffusers' XScheduler.from_config(pipe.scheduler.config).
public static class SchedulerFactory
{
    public static readonly IReadOnlyList<string> Names = [DdimScheduler.SamplerName, DpmSolverMultistepScheduler.SamplerName, EulerDiscreteScheduler.SamplerName];

    /// `name` is "ddim", "dpm++" or "euler"; null picks the sampler of the config's own _class_name.
    public static IScheduler Create(SchedulerConfig config, string? name = null) => (name ?? DefaultName(config)) switch
    {
        DdimScheduler.SamplerName => new DdimScheduler(config),
        DpmSolverMultistepScheduler.SamplerName => new DpmSolverMultistepScheduler(config),
        EulerDiscreteScheduler.SamplerName => new EulerDiscreteScheduler(config),
        var other => throw new ArgumentException($"unknown sampler '{other}' (expected one of: {string.Join(", ", Names)})", nameof(name)),
    };

    /// The sampler a diffusers scheduler class maps to. PNDM (the scheduler SD 1.x ships) and DDPM are not
    /// implemented as samplers: their configs sample with DDIM by default, which reads the same keys and, for an SD 1.5
    /// config, walks the same leading timestep grid (steps_offset 1). The images therefore differ from diffusers'
    /// PNDM (PLMS) output for the same seed; they match DDIMScheduler.from_config(pipe.scheduler.config).
    public static string? NameForClass(string className) => className switch
    {
        "DDIMScheduler" or "PNDMScheduler" or "DDPMScheduler" => DdimScheduler.SamplerName,
        "DPMSolverMultistepScheduler" => DpmSolverMultistepScheduler.SamplerName,
        "EulerDiscreteScheduler" => EulerDiscreteScheduler.SamplerName,
        _ => null,
    };

    public static string DefaultName(SchedulerConfig config)
    {
        if (config.ClassName is null)
            throw new ConfigException($"{config.Source}: no '_class_name' to choose a sampler from; name one explicitly ({string.Join(", ", Names)})");
        return NameForClass(config.ClassName)
            ?? throw new ConfigException($"{config.Source}: key '_class_name': '{config.ClassName}' has no sampler here (DDIMScheduler, PNDMScheduler, DDPMScheduler -> ddim; DPMSolverMultistepScheduler -> dpm++; EulerDiscreteScheduler -> euler); name one explicitly ({string.Join(", ", Names)})");
    }
}
