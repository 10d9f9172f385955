using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Evaluation;

/// Maximum mean discrepancy with a Gaussian kernel: how far two samples' distributions are apart in a
/// feature space (0 when they are identical). The unbiased estimator is used, so it can dip slightly
/// below zero for samples from the same distribution.
public static class Mmd
{
    /// Unbiased MMD² between x (n, d) and y (m, d) with kernel exp(-‖a-b‖² / (2σ²)).
    /// σ defaults to the median pairwise distance of the pooled sample (the usual heuristic).
    public static double Squared(Tensor x, Tensor y, double? sigma = null)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0], m = y.shape[0];
        if (n < 2 || m < 2) throw new ArgumentException("MMD needs at least two samples on each side");
        var xd = x.to_type(ScalarType.Float64);
        var yd = y.to_type(ScalarType.Float64);
        double s = sigma ?? MedianDistance(torch.cat([xd, yd]));
        double gamma = 1.0 / (2 * s * s);
        var kxx = torch.exp(torch.cdist(xd, xd).Squared().Times(-gamma));
        var kyy = torch.exp(torch.cdist(yd, yd).Squared().Times(-gamma));
        var kxy = torch.exp(torch.cdist(xd, yd).Squared().Times(-gamma));
        double sxx = (kxx.sum().item<double>() - n) / (n * (n - 1));  // diagonal terms are exp(0) = 1
        double syy = (kyy.sum().item<double>() - m) / (m * (m - 1));
        double sxy = kxy.mean().item<double>();
        return sxx + syy - 2 * sxy;
    }

    public static double MedianDistance(Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        var d = torch.cdist(z, z);
        long n = z.shape[0];
        var upper = d.masked_select(torch.ones(n, n, dtype: ScalarType.Bool).triu(1));
        double median = upper.median().item<double>();
        return median > 0 ? median : 1.0;
    }
}
