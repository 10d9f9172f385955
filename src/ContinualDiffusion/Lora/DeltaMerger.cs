using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// Turns saved adapters into dense weight deltas by summing them (the methods whose tasks add up; MagMax and the
/// Custom Diffusion merge combine them otherwise, Methods/TaskComposition):
/// - training task T: P = Σ_{t<T} Δ_t per layer (Δ = A·B, or the dense delta), the frozen past delta;
/// - sampling after T tasks: W ← W + Σ_{t≤T} Δ_t, in place, once, so sampling runs on plain Linears.
/// A token-only adapter (textual inversion) changes no layer and adds nothing.
/// Base weights are given as layer name → weight [out, in] (LoraInjector.BaseWeights builds that map).
public static class DeltaMerger
{
    /// Σ A·B over `adapters` for every layer of `baseWeights` (zeros when there are no adapters, i.e. task 1),
    /// on the weight's device, accumulated in float32 (float64 if the weight is float64). Every adapter must
    /// cover exactly these layers with matching shapes. The caller owns the returned tensors.
    public static Dictionary<string, Tensor> SumDeltas(IReadOnlyDictionary<string, Tensor> baseWeights, IEnumerable<AdapterSet> adapters)
    {
        ArgumentNullException.ThrowIfNull(baseWeights);
        ArgumentNullException.ThrowIfNull(adapters);
        var list = adapters.ToList();
        foreach (var a in list) CheckCovers(a, baseWeights);

        using var noGrad = torch.no_grad();
        var sums = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, w) in baseWeights)
            {
                var acc = torch.zeros(w.shape, AccumulationType(w.dtype), w.device);
                sums[name] = acc;
                foreach (var a in list) AddDelta(acc, a, name);
            }
            return sums;
        }
        catch
        {
            foreach (var t in sums.Values) t.Dispose();
            throw;
        }
    }

    /// The past deltas for training the task after `previousTaskFiles` (tasks 1..T-1; empty for task 1).
    public static Dictionary<string, Tensor> PastDeltas(IReadOnlyDictionary<string, Tensor> baseWeights, IEnumerable<string> previousTaskFiles, AdapterExpectation? expected = null)
    {
        var adapters = AdapterFile.LoadSequence(previousTaskFiles, expected ?? AdapterExpectation.ForWeights(baseWeights));
        try { return SumDeltas(baseWeights, adapters); }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    /// W ← W + Σ over adapters of A·B, in place (no autograd), for sampling. The sum is formed first and added
    /// once, so the result does not depend on the order of the adapters beyond float summation.
    public static void MergeInto(IReadOnlyDictionary<string, Tensor> baseWeights, IEnumerable<AdapterSet> adapters)
    {
        var sums = SumDeltas(baseWeights, adapters);
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var (name, w) in baseWeights)
            {
                using var delta = sums[name].to(w.dtype);
                w.AddInPlace(delta);
            }
        }
        finally
        {
            foreach (var t in sums.Values) t.Dispose();
        }
    }

    /// Loads the adapters of tasks 1..T (validated as a sequence) and merges them into the weights in place.
    public static void MergeInto(IReadOnlyDictionary<string, Tensor> baseWeights, IEnumerable<string> taskFiles, AdapterExpectation? expected = null)
    {
        var adapters = AdapterFile.LoadSequence(taskFiles, expected ?? AdapterExpectation.ForWeights(baseWeights));
        try { MergeInto(baseWeights, adapters); }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    private static void AddDelta(Tensor acc, AdapterSet adapter, string layer)
    {
        if (adapter.Layers.TryGetValue(layer, out var f))
        {
            using var a = f.A.to(acc.dtype, acc.device);
            using var b = f.B.to(acc.dtype, acc.device);
            acc.addmm_(a, b);
        }
        else if (adapter.DenseLayers.TryGetValue(layer, out var d))
        {
            using var delta = d.to(acc.dtype, acc.device);
            acc.AddInPlace(delta);
        }
    }

    private static ScalarType AccumulationType(ScalarType weight) =>
        weight == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// An adapter that changes layers must change exactly the model's adapted layers, with matching shapes; a
    /// token-only adapter changes none.
    internal static void CheckCovers(AdapterSet adapter, IReadOnlyDictionary<string, Tensor> baseWeights)
    {
        string source = $"adapter of task {adapter.Metadata.Task} ({adapter.Metadata.Token})";
        bool dense = adapter.DenseLayers.Count > 0;
        if (adapter.Layers.Count == 0 && !dense) return;
        Func<string, string> key = dense ? AdapterSet.KeyDelta : AdapterSet.KeyA;
        foreach (var (name, w) in baseWeights)
        {
            (long Out, long In) shape;
            if (adapter.Layers.TryGetValue(name, out var f)) shape = (f.OutFeatures, f.InFeatures);
            else if (adapter.DenseLayers.TryGetValue(name, out var d)) shape = (d.shape[0], d.shape[1]);
            else throw new AdapterFormatException($"{source}: missing key '{key(name)}'");
            if (shape.Out != w.shape[0] || shape.In != w.shape[1])
                throw new AdapterFormatException($"{source}: key '{key(name)}' makes a [{shape.Out}, {shape.In}] delta, the weight is [{string.Join(", ", w.shape)}]");
        }
        var extra = adapter.LayerNames.FirstOrDefault(k => !baseWeights.ContainsKey(k));
        if (extra is not null)
            throw new AdapterFormatException($"{source}: unexpected key '{key(extra)}' (the model has no such layer)");
    }
}
