using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// Turns saved adapters into dense weight deltas:
/// - training task T: P = Σ_{t<T} A_t B_t per layer, handed to the injector as each layer's frozen past delta;
/// - sampling after T tasks: W ← W + Σ_{t≤T} A_t B_t, in place, once, so sampling runs on plain Linears.
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
                foreach (var a in list) AddDelta(acc, a.Layers[name]);
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

    private static void AddDelta(Tensor acc, LoraFactors f)
    {
        using var a = f.A.to(acc.dtype, acc.device);
        using var b = f.B.to(acc.dtype, acc.device);
        acc.addmm_(a, b);
    }

    private static ScalarType AccumulationType(ScalarType weight) =>
        weight == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    private static void CheckCovers(AdapterSet adapter, IReadOnlyDictionary<string, Tensor> baseWeights)
    {
        string source = $"adapter of task {adapter.Metadata.Task} ({adapter.Metadata.Token})";
        foreach (var (name, w) in baseWeights)
        {
            if (!adapter.Layers.TryGetValue(name, out var f))
                throw new AdapterFormatException($"{source}: missing key '{AdapterSet.KeyA(name)}'");
            if (f.OutFeatures != w.shape[0] || f.InFeatures != w.shape[1])
                throw new AdapterFormatException($"{source}: key '{AdapterSet.KeyA(name)}' makes a [{f.OutFeatures}, {f.InFeatures}] delta, the weight is [{string.Join(", ", w.shape)}]");
        }
        var extra = adapter.Layers.Keys.FirstOrDefault(k => !baseWeights.ContainsKey(k));
        if (extra is not null)
            throw new AdapterFormatException($"{source}: unexpected key '{AdapterSet.KeyA(extra)}' (the model has no such layer)");
    }
}
