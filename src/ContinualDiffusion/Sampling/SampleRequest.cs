using TorchSharp;

namespace ContinualDiffusion.Sampling;

/// One text-to-image request, as `cdiff sample` takes it (defaults equal diffusers' StableDiffusionPipeline's).
public sealed record SampleRequest
{
    public required string Prompt { get; init; }
    public string NegativePrompt { get; init; } = "";
    public int Steps { get; init; } = 30;
    public double Guidance { get; init; } = 7.5;
    /// Lin et al.'s guidance rescale φ in [0, 1] (diffusers' `guidance_rescale`); 0 = plain guidance.
    public double GuidanceRescale { get; init; }
    /// ddim, dpm++ or euler; null = the model's own scheduler_config.json decides.
    public string? Scheduler { get; init; }
    public long Seed { get; init; }
    public int NumImages { get; init; } = 1;
    public int? Height { get; init; }
    public int? Width { get; init; }
    /// Initial noise (N, 4, H/f, W/f), scaled by the scheduler's init_noise_sigma as diffusers does.
    public torch.Tensor? Latents { get; init; }
}

/// Reported after every denoising step.
public sealed record SampleProgress(int Step, int TotalSteps, double StepSeconds);
