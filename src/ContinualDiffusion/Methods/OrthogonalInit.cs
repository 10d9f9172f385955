using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Methods;

/// Orthogonal initialisation of a new task's LoRA (Staniszewski et al. 2024, "Low-Rank Continual Personalization
/// of Diffusion Models": `ortho_init` in luk-st/continual-lora). Their code makes each input-dimension column of the new
/// down factor orthogonal to the same column of the previous task's; this is the stronger form cdiff's issue specifies: the
/// new factor's rows orthogonal to the row space of the whole past delta. With W_t = W_init + P + A·B, A [out, r] the up
/// factor (zero at init) and B [r, in] the down (input-side) factor, the new adapter reads the input through
/// the rows of B. Making those rows orthogonal to the row space of the past delta P [out, in],
///
///     P·Bᵀ = 0,
///
/// means the new adapter starts by reading input directions the past tasks did not write through, which is what
/// keeps it from overwriting them when A starts to train.
///
/// With the SVD P = U S Vᵀ (computed in float64), the past row space is spanned by the right singular vectors
/// v_1 … v_k whose singular value exceeds `relativeTolerance` × σ_max. Stacking them as V_k [k, in],
///
///     B' = B − (B V_kᵀ) V_k,
///
/// and each row of B' is rescaled to the norm the same row of B had, so the initialisation keeps its
/// kaiming-uniform scale (only the directions change).
///
/// Fallback when the past already spans (almost) everything: the complement of the past row space has
/// dimension in − k, and r rows cannot be made independent in fewer than r dimensions. If in − k < r (tiny
/// models: in = 32, r = 16, after two tasks k = 32), only the top in − r singular directions are avoided, so the
/// complement keeps exactly r dimensions. B' is then orthogonal to the past's most-used input directions and
/// P·B'ᵀ is small rather than zero. This is a deliberate choice: a rank-deficient (or zero) B would waste the
/// adapter's rank, and the directions given up are the ones the past uses least.
///
/// Dead rows: a row of B that lies (numerically) inside the avoided space projects to ~0 and cannot be rescaled.
/// A row whose projection has norm below 1e-12 × its original norm is replaced by a complement basis vector
/// (a right singular vector outside the avoided space) scaled to the original norm. Candidates are taken from
/// the LAST right singular vector backwards — the directions P uses least, its null space first — and each is
/// used at most once. A row of B that is exactly zero stays zero (its norm is 0).
///
/// At task 1 (P all zeros) there is nothing to avoid and B is returned unchanged (as a copy).
public static class OrthogonalInit
{
    /// A projected row with less than this fraction of its original norm is treated as dead (see above).
    private const double DeadRowFraction = 1e-12;

    /// The down factor `down` [r, in] projected onto the complement of `past`'s ([out, in]) row space, rows
    /// rescaled to their original norms. Returned in `down`'s dtype and on its device, owned by the caller;
    /// neither input is modified. `relativeTolerance` decides which singular values of P count as non-zero.
    public static Tensor ProjectDown(Tensor down, Tensor past, double relativeTolerance = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(down);
        ArgumentNullException.ThrowIfNull(past);
        if (down.dim() != 2) throw new ArgumentException($"the down factor must be [r, in], got {Shape(down)}", nameof(down));
        if (past.dim() != 2) throw new ArgumentException($"the past delta must be [out, in], got {Shape(past)}", nameof(past));
        long rank = down.shape[0], inFeatures = down.shape[1];
        if (past.shape[1] != inFeatures)
            throw new ArgumentException($"the down factor {Shape(down)} and the past delta {Shape(past)} must have the same number of input features");
        if (rank < 1 || rank > inFeatures)
            throw new ArgumentException($"the down factor {Shape(down)} must have 1..{inFeatures} rows to be made orthogonal within {inFeatures} input features", nameof(down));
        if (!double.IsFinite(relativeTolerance) || relativeTolerance < 0 || relativeTolerance >= 1)
            throw new ArgumentOutOfRangeException(nameof(relativeTolerance), relativeTolerance, "must be in [0, 1)");

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        if (past.count_nonzero().item<long>() == 0) return down.clone().MoveToOuterDisposeScope();

        var p = past.to(ScalarType.Float64, down.device);
        var b = down.to(ScalarType.Float64, down.device);
        var (_, s, vh) = torch.linalg.svd(p, fullMatrices: true); // vh: [in, in], rows = right singular vectors
        double[] singular = s.cpu().data<double>().ToArray();     // descending
        double threshold = relativeTolerance * singular[0];
        long pastDimension = singular.Count(sigma => sigma > threshold);
        long avoided = Math.Min(pastDimension, inFeatures - rank); // the fallback: the complement keeps ≥ r dimensions
        if (avoided == 0) return down.clone().MoveToOuterDisposeScope();

        var vk = vh.narrow(0, 0, avoided);                  // [avoided, in]
        var projected = b.sub(b.matmul(vk.t()).matmul(vk)); // B − (B V_kᵀ) V_k
        double[] before = RowNorms(b);
        double[] after = RowNorms(projected);

        var scale = new double[rank];
        var dead = new List<int>();
        for (int i = 0; i < rank; i++)
        {
            if (before[i] == 0) scale[i] = 0;                                  // a zero row stays zero
            else if (after[i] < DeadRowFraction * before[i]) dead.Add(i);       // replaced below (scale 0 first)
            else scale[i] = before[i] / after[i];
        }
        var scaleColumn = torch.tensor(scale, dtype: ScalarType.Float64, device: down.device).unsqueeze(1);
        var result = projected.mul(scaleColumn);

        long candidate = inFeatures - 1; // complement basis: vh rows avoided..in−1, least-used direction first
        foreach (int i in dead)
        {
            var replacement = vh[candidate--].Times(before[i]);
            result[i].copy_(replacement);
        }
        return result.to(down.dtype, down.device).MoveToOuterDisposeScope();
    }

    private static double[] RowNorms(Tensor m)
    {
        using var scope = torch.NewDisposeScope();
        return m.Squared().sum(1).sqrt().cpu().data<double>().ToArray();
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
