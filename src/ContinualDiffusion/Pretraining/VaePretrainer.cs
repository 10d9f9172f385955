using ContinualDiffusion.Runtime;
using ContinualDiffusion.Models;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// Trains an AutoencoderKL from scratch: pixel MSE of the reconstruction from a posterior sample plus a small
/// KL term. The KL weight only keeps the posterior a proper distribution with bounded variance; the latent
/// scale is fixed afterwards by `ScalingFactor`, so no stronger prior is needed (SD's VAE uses 1e-6 with a
/// perceptual and adversarial loss we do not have; plain MSE with 1e-4 gives sharper small images here).
internal static class VaePretrainer
{
    private const double KlWeight = 1e-4;

    public static double Train(AutoencoderKL vae, Tensor pixels, int steps, int batch, double learningRate, long seed,
        Action<PretrainStep>? afterStep, Action<string>? info, CancellationToken cancel)
    {
        vae.train();
        var parameters = vae.parameters().Where(p => p.requires_grad).ToList();
        using var gen = new Generator(unchecked((ulong)(seed * 2 + 1)));
        long n = pixels.shape[0];

        Tensor LossOf(int step)
        {
            var idx = torch.randint(0, n, [Math.Min(batch, n)], generator: gen, dtype: ScalarType.Int64);
            var x = pixels.index_select(0, idx);
            var (mean, logVar) = vae.Encode(x);
            var z = AutoencoderKL.SamplePosterior(mean, logVar, gen);
            var recon = vae.Decode(z);
            var kl = (mean.Squared().Plus(logVar.exp()).Minus(1) - logVar).mean().Times(0.5);
            return nn.functional.mse_loss(recon, x).Plus(kl.Times(KlWeight));
        }

        double last = PretrainLoop.Run("vae", steps, parameters, learningRate, weightDecay: 0, LossOf, afterStep, info, cancel);
        vae.eval();
        return last;
    }

    /// Posterior means of every image (N, C, R/f, R/f), unscaled. The mean rather than a sample: the UNet then
    /// learns the distribution the decoder reconstructs best, and the latents are computed once for all steps.
    public static Tensor EncodeMeans(AutoencoderKL vae, Tensor pixels, int batch = 256)
    {
        vae.eval();
        using var noGrad = torch.no_grad();
        var parts = new List<Tensor>();
        try
        {
            for (long start = 0; start < pixels.shape[0]; start += batch)
            {
                using var x = pixels.narrow(0, start, Math.Min(batch, pixels.shape[0] - start));
                var (mean, logVar) = vae.Encode(x);
                logVar.Dispose();
                parts.Add(mean);
            }
            return torch.cat(parts);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// 1 / std of the latents, so scaled latents have unit variance like the noise the UNet is trained against.
    public static double ScalingFactor(Tensor latents)
    {
        using var stdTensor = latents.std();
        double std = stdTensor.item<float>();
        return std > 1e-8 ? 1.0 / std : 1.0;
    }
}
