using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Evaluation;

/// Kernel Inception Distance (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018), here in the scoring
/// classifier's feature space instead of Inception's: the unbiased MMD² estimator with the cubic polynomial kernel
/// k(a, b) = (aᵀb / d + 1)³, d the feature dimension. Unlike FID it has an unbiased estimator, so it is comparable
/// across sample sizes and can dip slightly below zero for samples from one distribution.
public static class Kid
{
    /// Unbiased KID between x (n, d) and y (m, d), n, m ≥ 2.
    public static double Compute(Tensor x, Tensor y)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0], m = y.shape[0];
        if (n < 2 || m < 2) throw new ArgumentException("KID needs at least two samples on each side");
        if (x.shape[1] != y.shape[1]) throw new ArgumentException($"KID: feature dimensions differ ({x.shape[1]} vs {y.shape[1]})");
        double d = x.shape[1];
        var xd = x.to_type(ScalarType.Float64);
        var yd = y.to_type(ScalarType.Float64);
        Tensor Kernel(Tensor a, Tensor b) => a.matmul(b.t()).DividedBy(d).Plus(1).Power(3);
        var kxx = Kernel(xd, xd);
        var kyy = Kernel(yd, yd);
        double sxx = (kxx.sum().item<double>() - kxx.diagonal().sum().item<double>()) / (n * (n - 1));
        double syy = (kyy.sum().item<double>() - kyy.diagonal().sum().item<double>()) / (m * (m - 1));
        double sxy = Kernel(xd, yd).mean().item<double>();
        return sxx + syy - 2 * sxy;
    }
}
