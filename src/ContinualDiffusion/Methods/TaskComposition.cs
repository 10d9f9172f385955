using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Methods;

/// How a run's finished tasks become weights, per method (ContinualMethod.Composition):
/// - the frozen past a new task trains on (ForTraining), and
/// - the delta sampling adds after tasks 1..T (ForSampling / MergeInto).
/// Base weights are layer name → weight [out, in] (LoraInjector.BaseWeights); adapters are tasks 1..T in order.
public static class TaskComposition
{
    /// The past delta per layer for training the task after `past` (tasks 1..T-1), or null when the method trains
    /// every task from the base model (custom-diffusion-merge) — the injector then starts from zeros. Caller owns the
    /// tensors.
    public static Dictionary<string, Tensor>? ForTraining(ContinualMethod method, IReadOnlyDictionary<string, Tensor> baseWeights, IReadOnlyList<AdapterSet> past) =>
        method.Composition switch
        {
            PastComposition.Sum => DeltaMerger.SumDeltas(baseWeights, past),
            PastComposition.MagMax => MagMaxDeltas(baseWeights, past),
            PastComposition.ClosedFormMerge => null,
            _ => throw new ArgumentOutOfRangeException(nameof(method), method.Composition, "unknown composition"),
        };

    /// The delta per layer that sampling after `adapters` adds to the base weights (float32, on the weights' device).
    /// The closed-form merge needs the model's text encoder with every concept token registered. Caller owns the tensors.
    public static Dictionary<string, Tensor> ForSampling(ContinualMethod method, StableDiffusion? model, IReadOnlyDictionary<string, Tensor> baseWeights,
        IReadOnlyList<AdapterSet> adapters, string? captionsPath = null) => method.Composition switch
        {
            PastComposition.Sum => DeltaMerger.SumDeltas(baseWeights, adapters),
            PastComposition.MagMax => MagMaxDeltas(baseWeights, adapters),
            PastComposition.ClosedFormMerge => ClosedFormDeltas(model ?? throw new ArgumentNullException(nameof(model), "the closed-form merge needs the model's text encoder"),
                baseWeights, adapters, captionsPath ?? MergeFeatures.DefaultCaptionsPath),
            _ => throw new ArgumentOutOfRangeException(nameof(method), method.Composition, "unknown composition"),
        };

    /// W ← W + ForSampling(...), in place (no autograd): the weights `cdiff sample --run` samples with.
    public static void MergeInto(ContinualMethod method, StableDiffusion? model, IReadOnlyDictionary<string, Tensor> baseWeights,
        IReadOnlyList<AdapterSet> adapters, string? captionsPath = null)
    {
        var deltas = ForSampling(method, model, baseWeights, adapters, captionsPath);
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var (name, w) in baseWeights)
            {
                using var delta = deltas[name].to(w.dtype, w.device);
                w.AddInPlace(delta);
            }
        }
        finally { foreach (var t in deltas.Values) t.Dispose(); }
    }

    /// How many concepts custom-diffusion-merge can merge on a model whose text features are `textWidth` wide: each
    /// concept adds MergeFeatures.RowsPerConcept target rows, and the merge needs no more rows than the width.
    public static int MaxMergedConcepts(long textWidth) => (int)(textWidth / MergeFeatures.RowsPerConcept);

    /// The method of a sequence of adapters (all the same: AdapterFile.LoadSequence checks that); lora for none.
    public static ContinualMethod MethodOf(IReadOnlyList<AdapterSet> adapters) =>
        adapters.Count == 0 ? ContinualMethod.Lora : ContinualMethod.Of(adapters[0].Metadata.Method);

    /// M_1 = Δ_1, M_t = MagMax.Merge(M_{t-1}, Δ_t); zeros for no adapters.
    private static Dictionary<string, Tensor> MagMaxDeltas(IReadOnlyDictionary<string, Tensor> baseWeights, IReadOnlyList<AdapterSet> adapters)
    {
        foreach (var a in adapters) DeltaMerger.CheckCovers(a, baseWeights);
        var merged = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, w) in baseWeights)
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var m = torch.zeros(w.shape, ScalarType.Float32, w.device);
                foreach (var a in adapters)
                {
                    var delta = a.Delta(name);
                    if (delta is null) continue;
                    m = MagMax.Merge(m, delta.to(ScalarType.Float32, w.device));
                }
                merged[name] = m.MoveToOuterDisposeScope();
            }
            return merged;
        }
        catch
        {
            foreach (var t in merged.Values) t.Dispose();
            throw;
        }
    }

    /// Custom Diffusion's merge of every concept so far: per layer, W minimises ‖(W − W0) C_regᵀ‖² subject to
    /// W Cᵀ = Vᵀ, where C stacks each concept's target features and V what that concept's own weights W0 + D_i give
    /// for them (CustomDiffusionMerge). Returns W − W0.
    private static Dictionary<string, Tensor> ClosedFormDeltas(StableDiffusion model, IReadOnlyDictionary<string, Tensor> baseWeights,
        IReadOnlyList<AdapterSet> adapters, string captionsPath)
    {
        foreach (var a in adapters) DeltaMerger.CheckCovers(a, baseWeights);
        var merged = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        if (adapters.Count == 0)
        {
            foreach (var (name, w) in baseWeights) merged[name] = torch.zeros(w.shape, ScalarType.Float32, w.device);
            return merged;
        }
        using var outer = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var reg = MergeFeatures.Regularization(model, MergeFeatures.ReadCaptions(captionsPath));
        var targets = adapters.Select(a => MergeFeatures.ConceptToken(model, a.Metadata.Token)).ToList();
        var features = torch.cat(targets, 0);
        try
        {
            foreach (var (name, w) in baseWeights)
            {
                using var scope = torch.NewDisposeScope();
                var w0 = w.detach().to(ScalarType.Float32);
                var outputs = torch.cat(adapters.Select((a, i) =>
                {
                    var own = a.Delta(name) is { } d ? w0.Plus(d.to(ScalarType.Float32, w.device)) : w0;
                    return targets[i].matmul(own.t());
                }).ToArray(), 0);
                var (c, v) = CustomDiffusionMerge.RemoveDuplicateRows(features, outputs);
                Tensor result;
                try { result = CustomDiffusionMerge.Merge(w0, c, v, reg); }
                catch (InvalidOperationException e)
                {
                    throw new InputException($"custom-diffusion-merge cannot merge these {adapters.Count} concepts at layer {name} " +
                        $"({c.shape[0]} target features for a text width of {w.shape[1]}): {e.Message}");
                }
                merged[name] = result.sub(w0).MoveToOuterDisposeScope();
            }
            foreach (var t in merged.Values) t.MoveToOuterDisposeScope();
            return merged;
        }
        catch
        {
            foreach (var t in merged.Values) t.Dispose();
            throw;
        }
    }
}
