using ContinualDiffusion.Imaging;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// The concept's images in latent space, computed once per task with the frozen VAE: the posterior mean and
/// standard deviation of each image (and of its mirror image when flips are on), so a training step only
/// draws z = mean + std · ε (as diffusers' training scripts sample latent_dist) and scales it.
/// Latent i < N is image i, N + i its mirror image (N images). With aspect buckets the latents are held per bucket
/// (one size each); a batch must come from one bucket (BucketOf, Bucket).
public sealed class ConceptLatents : IDisposable
{
    private sealed record Group(Tensor Mean, Tensor Std, long[] Members);

    private readonly Group[] _groups;
    private readonly (int Group, long Row)[] _where;
    private readonly double _scalingFactor;

    public int Count => _where.Length;
    public int BucketCount => _groups.Length;

    private ConceptLatents(Group[] groups, double scalingFactor)
    {
        _groups = groups;
        _scalingFactor = scalingFactor;
        _where = new (int, long)[groups.Sum(g => g.Members.Length)];
        for (int g = 0; g < groups.Length; g++)
            for (long row = 0; row < groups[g].Members.Length; row++)
                _where[groups[g].Members[row]] = (g, row);
    }

    /// `images`: (N, 3, H, W) in [-1, 1].
    public static ConceptLatents Encode(AutoencoderKL vae, Tensor images, bool withFlips, int batchSize = 8) =>
        Encode(vae, [new ImageGroup((int)images.shape[3], (int)images.shape[2], [.. Enumerable.Range(0, (int)images.shape[0])], images)],
            (int)images.shape[0], withFlips, batchSize: batchSize);

    /// ImageFolder's groups (one per aspect bucket, or one of every image), moved to `device`; `imageCount`: N.
    public static ConceptLatents Encode(AutoencoderKL vae, IReadOnlyList<ImageGroup> groups, int imageCount, bool withFlips, Device? device = null, int batchSize = 8)
    {
        var encoded = new List<Group>();
        try
        {
            foreach (var g in groups)
            {
                Tensor mean, std;
                using (var scope = torch.NewDisposeScope()) // the copy to the device
                    (mean, std) = EncodeGroup(vae, g.Pixels.to(device ?? g.Pixels.device), withFlips, batchSize);
                var members = g.Indices.Select(i => (long)i).Concat(withFlips ? g.Indices.Select(i => (long)i + imageCount) : []).ToArray();
                encoded.Add(new Group(mean, std, members));
            }
            var all = encoded.SelectMany(g => g.Members).Order().ToArray();
            if (!all.SequenceEqual(Enumerable.Range(0, all.Length).Select(i => (long)i)) || all.Length != (withFlips ? 2 : 1) * imageCount)
                throw new ArgumentException($"the groups' indices must be 0..{imageCount - 1}, each once", nameof(groups));
            return new ConceptLatents([.. encoded], vae.ScalingFactor);
        }
        catch
        {
            foreach (var g in encoded) { g.Mean.Dispose(); g.Std.Dispose(); }
            throw;
        }
    }

    private static (Tensor Mean, Tensor Std) EncodeGroup(AutoencoderKL vae, Tensor images, bool withFlips, int batchSize)
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
        return (torch.cat(means).DetachFromDisposeScope(), torch.cat(stds).DetachFromDisposeScope()); // owned by the ConceptLatents made of them
    }

    /// The bucket latent `index` is in.
    public int BucketOf(long index) => _where[index].Group;

    /// The latents of bucket `bucket` (indices as Sample takes them).
    public IReadOnlyList<long> Bucket(int bucket) => _groups[bucket].Members;

    /// A batch of scaled latents for the given indices (all of one bucket), with fresh posterior noise from `generator`.
    public Tensor Sample(long[] indices, Generator generator)
    {
        int g = _where[indices[0]].Group;
        if (indices.Any(i => _where[i].Group != g))
            throw new ArgumentException("a batch's latents must come from one aspect bucket", nameof(indices));
        using var scope = torch.NewDisposeScope();
        using var idx = torch.tensor(indices.Select(i => _where[i].Row).ToArray());
        var mean = _groups[g].Mean.index_select(0, idx);
        var std = _groups[g].Std.index_select(0, idx);
        var eps = torch.randn(mean.shape, generator: generator);
        return mean.Plus(std * eps).Times(_scalingFactor).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var g in _groups)
        {
            g.Mean.Dispose();
            g.Std.Dispose();
        }
    }
}
