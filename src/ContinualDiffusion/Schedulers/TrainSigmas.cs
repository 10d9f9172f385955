namespace ContinualDiffusion.Schedulers;

/// The Karras-style noise levels sigma_t = sqrt((1 - acp_t) / acp_t) of the training schedule, as diffusers'
/// Euler and DPM-Solver schedulers compute them (float32 tensor arithmetic), and how they locate a timestep.
internal static class TrainSigmas
{
    public static float[] From(IReadOnlyList<float> alphasCumprod) =>
        alphasCumprod.Select(a => MathF.Sqrt((1f - a) / a)).ToArray();

    /// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (diffusers' _sigma_to_alpha_sigma_t), in float32.
    public static (float Alpha, float Sigma) ToAlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    /// diffusers' index_for_timestep: the position of `timestep` in the schedule, the second one if it occurs
    /// twice (so img2img-style restarts do not skip a sigma); -1 when absent.
    public static int IndexOf(IReadOnlyList<Timestep> timesteps, Timestep timestep)
    {
        int first = -1;
        for (int i = 0; i < timesteps.Count; i++)
        {
            if (timesteps[i].Value != timestep.Value) continue;
            if (first >= 0) return i;
            first = i;
        }
        return first;
    }
}
