using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// A diffusers-compatible sampler. The sampling loop is
///   scheduler.SetTimesteps(n); latents = noise * scheduler.InitNoiseSigma;
///   foreach (var t in scheduler.Timesteps) { mi = ScaleModelInput(latents, t); out = unet(mi, t, ctx); latents = Step(out, t, latents); }
/// Schedulers are stateful (step index, DPM-Solver's previous outputs): SetTimesteps resets them, one trajectory
/// at a time. Returned tensors are new handles owned by the caller (ScaleModelInput may alias the input's storage).
public interface IScheduler : IDisposable
{
    /// "ddim", "dpm++" or "euler".
    string Name { get; }

    SchedulerConfig Config { get; }

    /// The betas / alphas_cumprod the sampler was built from (the same the trainer uses).
    NoiseSchedule Schedule { get; }

    /// Number of steps given to the last SetTimesteps (0 before).
    int NumInferenceSteps { get; }

    void SetTimesteps(int numInferenceSteps);

    /// Timesteps in sampling order (high noise first), equal to diffusers' scheduler.timesteps.
    IReadOnlyList<Timestep> Timesteps { get; }

    /// Standard deviation of the initial noise: x_T = noise * InitNoiseSigma.
    double InitNoiseSigma { get; }

    Tensor ScaleModelInput(Tensor sample, Timestep timestep);

    /// One denoising step: the sample at the next (lower-noise) timestep.
    Tensor Step(Tensor modelOutput, Timestep timestep, Tensor sample);
}
