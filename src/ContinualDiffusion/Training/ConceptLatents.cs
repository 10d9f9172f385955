using ContinualDiffusion.Runtime;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// The concept's images in latent space, computed once per task with the frozen VAE: the posterior mean and
/// standard deviation of each image (and of its mirror image when flips are on), so a training step only
/// draws z = mean + std · ε (as diffusers' training scripts sample latent_dist) and scales it.
public sealed class ConceptLatents : IDisposable
{
    private readonly Tensor _mean, _std;
    private readonly double _scalingFactor;
    public int Count => (int)_mean.shape[0];

    private ConceptLatents(Tensor mean, Tensor std, double scalingFactor)
    {
        _mean = mean; _std = std; _scalingFactor = scalingFactor;
    }

    /// `images`: (N, 3, H, W) in [-1, 1].
    public static ConceptLatents Encode(AutoencoderKL vae, Tensor images, bool withFlips, int batchSize = 8)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var all = withFlips ? torch.cat([images, images.flip(3)]) : images;
        var means = new List<Tensor>();
        var stds = new List<Tensor>();
        for (long start = 0; start < all.shape[0]; start += batchSize)
        {
            var batch = all.narrow(0, start, Math.Min(batchSize, all.shape[0] - start));
            var (mean, logvar) = vae.Encode(batch);
            means.Add(mean);
            stds.Add(logvar.Times(0.5).exp());
        }
        return new ConceptLatents(torch.cat(means).MoveToOuterDisposeScope(), torch.cat(stds).MoveToOuterDisposeScope(), vae.ScalingFactor);
    }

    /// A batch of scaled latents for the given image indices, with fresh posterior noise from `generator`.
    public Tensor Sample(long[] indices, Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        using var idx = torch.tensor(indices);
        var mean = _mean.index_select(0, idx);
        var std = _std.index_select(0, idx);
        var eps = torch.randn(mean.shape, generator: generator);
        return mean.Plus(std * eps).Times(_scalingFactor).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _mean.Dispose();
        _std.Dispose();
    }
}
