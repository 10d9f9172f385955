using ContinualDiffusion.Runtime;
using static TorchSharp.torch;

namespace ContinualDiffusion.Sampling;

/// Classifier-free guidance (Ho & Salimans 2022) on the UNet's two predictions, as diffusers'
/// StableDiffusionPipeline combines them: uncond + g · (text − uncond), then, when `rescale` > 0, Lin et al.'s
/// "guidance rescale" (Common Diffusion Noise Schedules and Sample Steps Are Flawed, 2024, eq. 15–16; diffusers'
/// `rescale_noise_cfg`): the guided prediction is scaled to the per-sample standard deviation of the text-only one
/// and mixed back, φ · rescaled + (1 − φ) · guided. It counters the over-exposure (white or black images) that
/// large guidance scales give.
public static class ClassifierFreeGuidance
{
    /// `uncond`, `text`: (N, C, H, W) predictions for the negative and the positive prompt.
    public static Tensor Combine(Tensor uncond, Tensor text, double scale, double rescale)
    {
        using var scope = NewDisposeScope();
        var guided = uncond.Plus(text.sub(uncond).Times(scale));
        if (rescale > 0)
        {
            long[] perSample = [.. Enumerable.Range(1, (int)guided.dim() - 1).Select(d => (long)d)];
            var stdText = text.std(perSample, true, true);
            var stdGuided = guided.std(perSample, true, true);
            var rescaled = guided.mul(stdText.div(stdGuided));
            guided = rescaled.Times(rescale).Plus(guided.Times(1 - rescale));
        }
        return guided.MoveToOuterDisposeScope();
    }
}
