using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// Min-SNR loss weighting (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023), as
/// diffusers' training scripts apply it with `--snr_gamma` (kohya: `--min_snr_gamma`): each sample's mean squared error
/// is weighted by min(SNR(t), γ) / SNR(t) for epsilon prediction, min(SNR(t), γ) / (SNR(t) + 1) for v-prediction and
/// min(SNR(t), γ) for sample prediction, where SNR(t) = ᾱ_t / (1 − ᾱ_t); the batch's loss is the mean of the weighted
/// errors. It keeps the many low-noise steps (huge SNR) from dominating the gradient.
public static class MinSnrWeighting
{
    /// The per-sample weights [b] (float32) for timesteps `t` [b].
    public static Tensor Weights(NoiseSchedule schedule, Tensor t, double gamma)
    {
        var acp = schedule.AlphasCumprod;
        var weights = t.cpu().data<long>().Select(step =>
        {
            double a = acp[(int)step], snr = a / (1 - a), clipped = Math.Min(snr, gamma);
            return (float)(schedule.PredictionType switch
            {
                "epsilon" => clipped / snr,
                "v_prediction" => clipped / (snr + 1),
                _ => clipped,
            });
        }).ToArray();
        return torch.tensor(weights, ScalarType.Float32).to(t.device);
    }

    /// mean_i( w_i · mean_{c,h,w}((pred_i − target_i)²) ), computed in float32.
    public static Tensor Loss(Tensor pred, Tensor target, Tensor weights)
    {
        using var scope = torch.NewDisposeScope();
        var perSample = nn.functional.mse_loss(pred.to(ScalarType.Float32), target.to(ScalarType.Float32), nn.Reduction.None)
            .mean([.. Enumerable.Range(1, (int)pred.dim() - 1).Select(d => (long)d)]);
        return perSample.mul(weights).mean().MoveToOuterDisposeScope();
    }
}
