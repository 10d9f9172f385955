using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Methods;

/// MagMax merging of task deltas (Marczak et al. 2024, as used for continual LoRA personalisation by
/// Staniszewski et al. 2024, "Low-Rank Continual Personalization of Diffusion Models": `merge_max_abs` in
/// luk-st/continual-lora, merging/task_vectors.py). Element-wise, the merged delta keeps whichever of the past
/// merged delta M and the new task's delta Δ has the larger magnitude:
///
///     Merge(M, Δ)_ij = Δ_ij   if |Δ_ij| ≥ |M_ij|      (a tie keeps the NEW delta, as their torch.where does)
///                    = M_ij   otherwise
///
/// and a sequence of task deltas d_1 … d_T is folded from the left: M_1 = d_1, M_t = Merge(M_{t−1}, d_t).
/// Unlike a sum, the merge never grows an entry beyond the largest single-task change to it, and unlike an
/// average it does not shrink a change only one task made.
public static class MagMax
{
    /// The element-wise max-magnitude merge of `past` (the merged delta so far) and `delta` (the new task's),
    /// both [out, in] (any shape, as long as they match). Returned in `past`'s dtype and on its device, owned by
    /// the caller; neither input is modified.
    public static Tensor Merge(Tensor past, Tensor delta)
    {
        ArgumentNullException.ThrowIfNull(past);
        ArgumentNullException.ThrowIfNull(delta);
        if (!past.shape.SequenceEqual(delta.shape))
            throw new ArgumentException($"MagMax merge needs deltas of one shape: the past merged delta is {Shape(past)}, the new delta is {Shape(delta)}");

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var current = delta.to(past.dtype, past.device);
        using var currentMagnitude = current.abs();
        using var pastMagnitude = past.abs();
        using var keepNew = currentMagnitude.ge(pastMagnitude);
        var merged = torch.where(keepNew, current, past);
        return merged.MoveToOuterDisposeScope();
    }

    /// M_T for the task deltas d_1 … d_T in order: M_1 = d_1 (a copy), M_t = Merge(M_{t−1}, d_t). All deltas
    /// must have one shape; the result has the first delta's dtype and device and belongs to the caller.
    public static Tensor MergeSequence(IReadOnlyList<Tensor> deltas)
    {
        ArgumentNullException.ThrowIfNull(deltas);
        if (deltas.Count == 0) throw new ArgumentException("MagMax needs at least one task delta, got none", nameof(deltas));
        for (int i = 0; i < deltas.Count; i++)
        {
            if (deltas[i] is null) throw new ArgumentException($"task delta {i} is null", nameof(deltas));
            if (!deltas[i].shape.SequenceEqual(deltas[0].shape))
                throw new ArgumentException($"MagMax merge needs deltas of one shape: delta {i} is {Shape(deltas[i])}, delta 0 is {Shape(deltas[0])}", nameof(deltas));
        }

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var merged = deltas[0].clone();
        for (int t = 1; t < deltas.Count; t++)
        {
            var next = Merge(merged, deltas[t]); // lands in this scope
            merged.Dispose();                    // only one [out, in] intermediate alive at a time
            merged = next;
        }
        return merged.MoveToOuterDisposeScope();
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
