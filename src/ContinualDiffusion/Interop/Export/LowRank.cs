using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// A rank-N LoRA for a dense delta: the truncated SVD Δ ≈ U_N S_N V_Nᵀ (the best rank-N approximation in the Frobenius
/// norm, Eckart–Young), split symmetrically as Up = U_N·√S_N [out, N], Down = √S_N·V_Nᵀ [N, in]. Computed in float64;
/// the factors are returned as float32. The error needs no reconstruction: ‖Δ − Δ_N‖²_F = Σ_{i>N} σ_i².
public static class LowRank
{
    public sealed record Result(Tensor Up, Tensor Down, double ResidualSquared, double NormSquared)
    {
        /// ‖Δ − Up·Down‖_F / ‖Δ‖_F (0 for a zero delta).
        public double RelativeError => NormSquared > 0 ? Math.Sqrt(ResidualSquared / NormSquared) : 0;
    }

    /// `delta` [out, in], 1 ≤ rank ≤ min(out, in). The returned tensors belong to the caller (or the enclosing scope).
    public static Result Truncate(Tensor delta, int rank)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (delta.dim() != 2) throw new ArgumentException($"delta must be [out, in], got [{string.Join(", ", delta.shape)}]", nameof(delta));
        long maxRank = Math.Min(delta.shape[0], delta.shape[1]);
        if (rank < 1 || rank > maxRank) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"must be in 1..{maxRank}");

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var d = delta.to_type(ScalarType.Float64);
        var (u, s, vh) = torch.linalg.svd(d, fullMatrices: false);
        var sqrtS = s.narrow(0, 0, rank).sqrt();
        var up = u.narrow(1, 0, rank).mul(sqrtS.unsqueeze(0)).to_type(ScalarType.Float32).contiguous();
        var down = vh.narrow(0, 0, rank).mul(sqrtS.unsqueeze(1)).to_type(ScalarType.Float32).contiguous();
        var squares = s.mul(s);
        double total = squares.sum().item<double>();
        double residual = rank < s.shape[0] ? squares.narrow(0, rank, s.shape[0] - rank).sum().item<double>() : 0;
        return new Result(up.MoveToOuterDisposeScope(), down.MoveToOuterDisposeScope(), residual, total);
    }
}
