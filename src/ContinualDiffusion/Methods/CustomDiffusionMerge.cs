using System.Runtime.InteropServices;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Methods;

/// Custom Diffusion's closed-form merge of separately fine-tuned projections (Kumari et al., CVPR 2023,
/// "Multi-Concept Customization of Text-to-Image Diffusion"; reference: adobe-research/custom-diffusion,
/// src/diffusers_composenW.py, `gdupdateWexact`). For one cross-attention projection W0 [out, in] (Linear
/// convention y = x W0ᵀ), every concept i was fine-tuned to its own W_i. The merged W must reproduce, for the
/// text features of every concept's target tokens, the output that concept's own weight gives, and otherwise
/// stay as close to W0 as possible on generic text:
///
///     minimise ‖(W − W0) C_regᵀ‖²_F   subject to   W Cᵀ = Vᵀ
///
/// with C [n, in] the stacked target-token features of all concepts, V [n, out] their outputs under each concept's
/// own weight (V_i = C_i W_iᵀ), and C_reg [m, in] the features of generic regularisation captions. With
/// M = C_regᵀ C_reg [in, in], the Lagrangian gives W = W0 + Λ C M⁻¹ for some Λ [out, n]; the constraint fixes Λ:
///
///     d = C M⁻¹                          [n, in]
///     W = W0 + (Vᵀ − W0 Cᵀ) (d Cᵀ)⁻¹ d   (d Cᵀ = C M⁻¹ Cᵀ is [n, n])
///
/// Computed in float64 with linear solves (no explicit inverse): d = (M⁻¹ Cᵀ)ᵀ since M is symmetric, and
/// R (d Cᵀ)⁻¹ as the transpose of (d Cᵀ)ᵀ X = Rᵀ. The reference does the same in float32 with an LU solve and
/// an explicit inverse. Both matrices must be invertible:
///   - M alone is singular when the regularisation features span fewer than `in` directions (always, in practice:
///     the text encoder's final LayerNorm), so a small ridge is added (RidgeFraction; the reference has none and relies
///     on float32 rounding); only all-zero regularisation features are refused;
///   - d Cᵀ is singular when target features are linearly dependent: duplicate rows (identical prompt prefixes
///     give identical features — drop them with <see cref="RemoveDuplicateRows"/> first), more target rows than
///     input features (n > in), or a row that is a combination of others.
/// "Singular" means a singular value at or below 1e-12 × the largest (torch.linalg.matrix_rank with that relative
/// tolerance): a solve of an exactly singular matrix rarely fails in floating point, it meets a pivot of rounding
/// size and returns huge, meaningless values, and beyond a condition number of 1e12 even float64 leaves fewer than
/// four significant digits. For M = C_regᵀ C_reg the bound is a condition number of 1e6 for C_reg itself, past what
/// float32 features resolve anyway.
public static class CustomDiffusionMerge
{
    /// The ridge added to C_regᵀ C_reg, as a fraction of its mean eigenvalue (see Merge; 1e-2 is a first choice, not tuned).
    public const double RidgeFraction = 1e-2;

    /// Singular values at or below this fraction of the largest count as zero (see above).
    private const double RankTolerance = 1e-12;

    /// The merged weight W [out, in] for base weight `w0` [out, in], target features C [n, in], target outputs
    /// V [n, out] and regularisation features C_reg [m, in]. Returned in `w0`'s dtype and on its device, owned by
    /// the caller; no input is modified.
    public static Tensor Merge(Tensor w0, Tensor targetFeatures, Tensor targetOutputs, Tensor regularizationFeatures)
    {
        ArgumentNullException.ThrowIfNull(w0);
        ArgumentNullException.ThrowIfNull(targetFeatures);
        ArgumentNullException.ThrowIfNull(targetOutputs);
        ArgumentNullException.ThrowIfNull(regularizationFeatures);
        if (w0.dim() != 2) throw new ArgumentException($"the base weight W0 must be [out, in], got {Shape(w0)}", nameof(w0));
        long outFeatures = w0.shape[0], inFeatures = w0.shape[1];
        if (targetFeatures.dim() != 2 || targetFeatures.shape[1] != inFeatures || targetFeatures.shape[0] < 1)
            throw new ArgumentException($"target features C must be [n ≥ 1, in = {inFeatures}] for W0 {Shape(w0)}, got {Shape(targetFeatures)}", nameof(targetFeatures));
        long n = targetFeatures.shape[0];
        if (targetOutputs.dim() != 2 || targetOutputs.shape[0] != n || targetOutputs.shape[1] != outFeatures)
            throw new ArgumentException($"target outputs V must be [n = {n}, out = {outFeatures}] for C {Shape(targetFeatures)} and W0 {Shape(w0)}, got {Shape(targetOutputs)}", nameof(targetOutputs));
        if (regularizationFeatures.dim() != 2 || regularizationFeatures.shape[1] != inFeatures || regularizationFeatures.shape[0] < 1)
            throw new ArgumentException($"regularisation features C_reg must be [m ≥ 1, in = {inFeatures}] for W0 {Shape(w0)}, got {Shape(regularizationFeatures)}", nameof(regularizationFeatures));

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var device = w0.device;
        var w = w0.to(ScalarType.Float64, device);
        var c = targetFeatures.to(ScalarType.Float64, device);
        var v = targetOutputs.to(ScalarType.Float64, device);
        var cReg = regularizationFeatures.to(ScalarType.Float64, device);
        long m = cReg.shape[0];

        // M = C_regᵀ C_reg + ε I, ε = RidgeFraction × the mean eigenvalue: text-encoder outputs end in a LayerNorm, so the
        // features of any caption set lie (numerically) in fewer than `in` directions and C_regᵀ C_reg alone is singular
        // (measured: the shipped Fashion model's 1,370 caption rows, in = 32). The ridge adds ε‖W − W0‖² to the objective,
        // which anchors the directions captions hardly use at W0; the constraint W Cᵀ = Vᵀ still holds exactly. Too small a
        // ridge lets the merge put its whole change into those directions, which every other prompt's features also touch:
        // at 1e-6 every prompt collapsed from the second concept on (benchmark seed 0: pullover 47% → 0%, base prompts 11%).
        var plainGram = cReg.t().matmul(cReg);
        double ridge = RidgeFraction * plainGram.trace().item<double>() / inFeatures;
        var gram = plainGram.Plus(torch.eye(inFeatures, dtype: ScalarType.Float64, device: device).Times(ridge));
        string gramSingular =
            $"C_regᵀ C_reg [{inFeatures}, {inFeatures}] is singular: the {m} regularisation feature rows span fewer than in = {inFeatures} " +
            "independent directions, so the merge is not determined off the targets. Use more (or longer) regularisation captions" +
            (m < inFeatures ? $" (at least {inFeatures} feature rows are needed, {m} were given)." : ".");
        RequireFullRank(gram, hermitian: true, gramSingular);
        var d = Solve(gram, c.t(), gramSingular).t(); // d = C M⁻¹ = (M⁻¹ Cᵀ)ᵀ, [n, in]

        var system = d.matmul(c.t()); // d Cᵀ = C M⁻¹ Cᵀ, [n, n]
        string systemSingular =
            $"d Cᵀ [{n}, {n}] (= C (C_regᵀ C_reg)⁻¹ Cᵀ) is singular: the {n} target feature rows are linearly dependent — duplicate rows " +
            "(identical prompt prefixes give identical features: call RemoveDuplicateRows first), rows that combine others" +
            (n > inFeatures ? $", or more target rows than input features ({n} > {inFeatures})." : ".");
        RequireFullRank(system, hermitian: false, systemSingular);
        var residual = v.t().sub(w.matmul(c.t()));                        // Vᵀ − W0 Cᵀ, [out, n]
        var lambda = Solve(system.t(), residual.t(), systemSingular).t(); // R (d Cᵀ)⁻¹, [out, n]
        var merged = w.Plus(lambda.matmul(d));

        if (!merged.isfinite().all().item<bool>())
            throw new InvalidOperationException($"the merged weight is not finite: {systemSingular}");
        return merged.to(w0.dtype, device).MoveToOuterDisposeScope();
    }

    /// `features` [n, in] without every row that is exactly equal to an earlier row, and `outputs` [n, …] without
    /// the same rows (the reference drops them too: identical prompt prefixes give identical features, which would
    /// make d Cᵀ singular). The first occurrence is kept, order is preserved. Both results are new tensors owned
    /// by the caller.
    public static (Tensor Features, Tensor Outputs) RemoveDuplicateRows(Tensor features, Tensor outputs)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(outputs);
        if (features.dim() != 2) throw new ArgumentException($"features must be [n, in], got {Shape(features)}", nameof(features));
        if (outputs.dim() < 1 || outputs.shape[0] != features.shape[0])
            throw new ArgumentException($"outputs {Shape(outputs)} must have one row per feature row of {Shape(features)}", nameof(outputs));

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long n = features.shape[0], width = features.shape[1];
        // Float64 holds every float16/bfloat16/float32 value exactly, so equality is decided on the original values.
        double[] values = features.to(ScalarType.Float64, torch.CPU).contiguous().data<double>().ToArray();
        var keep = new List<long>();
        for (long i = 0; i < n; i++)
            if (!keep.Any(j => RowsEqual(values, i, j, width))) keep.Add(i);

        var keptFeatures = features.index_select(0, torch.tensor(keep.ToArray(), device: features.device));
        var keptOutputs = outputs.index_select(0, torch.tensor(keep.ToArray(), device: outputs.device));
        return (keptFeatures.MoveToOuterDisposeScope(), keptOutputs.MoveToOuterDisposeScope());
    }

    private static bool RowsEqual(double[] values, long i, long j, long width)
    {
        for (long k = 0; k < width; k++)
            if (values[i * width + k] != values[j * width + k]) return false;
        return true;
    }

    private static void RequireFullRank(Tensor square, bool hermitian, string message)
    {
        using var scope = torch.NewDisposeScope();
        if (!square.isfinite().all().item<bool>()) throw new InvalidOperationException(message);
        long rank = torch.linalg.matrix_rank(square, atol: null, rtol: RankTolerance, hermitian: hermitian).item<long>();
        if (rank < square.shape[0]) throw new InvalidOperationException($"{message} (numerical rank {rank} of {square.shape[0]})");
    }

    /// A X = B, with libtorch's "singular matrix" error turned into the explanation of why it is singular.
    private static Tensor Solve(Tensor a, Tensor b, string message)
    {
        try
        {
            return torch.linalg.solve(a, b);
        }
        catch (ExternalException e)
        {
            throw new InvalidOperationException($"{message} ({e.Message.Split('\n')[0]})", e);
        }
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
