using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// Trains the UNet from scratch to predict the noise (or the config's prediction type) on precomputed, scaled
/// VAE latents, conditioned on the text encoder's states of each caption, with the DDPM schedule of the
/// model's own scheduler config so DDIM sampling matches training.
///
/// The text encoder stays frozen at its seeded random initialisation. Why: a randomly initialised CLIP still
/// maps different prompts to different states (causal attention carries the class word into every later
/// position), the UNet's cross-attention learns to read them, and frozen states can be computed once per
/// distinct caption, which keeps a step at the UNet's cost alone. C-LoRA later adapts only the UNet's
/// cross-attention and a token row, which works the same on a frozen random encoder.
internal static class UNetPretrainer
{
    /// Captions dropped to "" this often, so the model also learns the unconditional prediction that
    /// classifier-free guidance subtracts at sampling time (SD used 10%).
    private const double CaptionDropout = 0.1;

    public static double Train(StableDiffusion model, Tensor scaledLatents, IReadOnlyList<string> captions, int steps, int batch,
        double learningRate, long seed, Action<PretrainStep>? afterStep, Action<string>? info, CancellationToken cancel)
    {
        var (states, captionIndex) = EncodeCaptions(model, captions);
        using var _ = states;
        int unconditional = (int)states.shape[0] - 1;
        var schedule = new NoiseSchedule(model.SchedulerConfig);
        var unet = model.Unet;
        unet.train();
        var parameters = unet.parameters().Where(p => p.requires_grad).ToList();
        using var gen = new Generator(unchecked((ulong)(seed * 2 + 2)));
        var rng = new Random(unchecked((int)seed));
        long n = scaledLatents.shape[0];
        int b = (int)Math.Min(batch, n);

        Tensor LossOf(int step)
        {
            var picks = Enumerable.Range(0, b).Select(_ => rng.NextInt64(n)).ToArray();
            var textRows = picks.Select(i => rng.NextDouble() < CaptionDropout ? unconditional : captionIndex[(int)i]).Select(i => (long)i).ToArray();
            var z0 = scaledLatents.index_select(0, torch.tensor(picks));
            var context = states.index_select(0, torch.tensor(textRows));
            var noise = torch.randn(z0.shape, generator: gen);
            var t = torch.randint(0, schedule.NumTrainTimesteps, [b], generator: gen, dtype: ScalarType.Int64);
            var noisy = schedule.AddNoise(z0, noise, t);
            var target = schedule.TrainingTarget(z0, noise, t);
            var pred = unet.forward(noisy.to(model.Device), t.to(model.Device), context.to(model.Device));
            return nn.functional.mse_loss(pred, target.to(model.Device));
        }

        double last = PretrainLoop.Run("unet", steps, parameters, learningRate, weightDecay: 1e-2, LossOf, afterStep, info, cancel);
        unet.eval();
        return last;
    }

    /// Text states of each distinct caption, plus the empty prompt as the last row; and each image's row.
    private static (Tensor States, int[] CaptionIndex) EncodeCaptions(StableDiffusion model, IReadOnlyList<string> captions)
    {
        var distinct = captions.Distinct(StringComparer.Ordinal).ToList();
        var row = distinct.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i, StringComparer.Ordinal);
        distinct.Add("");
        using var noGrad = torch.no_grad();
        var parts = new List<Tensor>();
        try
        {
            for (int start = 0; start < distinct.Count; start += 256)
            {
                using var scope = torch.NewDisposeScope();
                using var ids = model.Tokenize(distinct.Skip(start).Take(256).ToList());
                parts.Add(model.TextEncoder.forward(ids).cpu().MoveToOuterDisposeScope());
            }
            return (torch.cat(parts), captions.Select(c => row[c]).ToArray());
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }
}
