using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// One projection to adapt: its layer name (state-dict path, e.g. "...attn2.to_k"), the Linear it is now, and
/// how to put a replacement module in its place in the parent.
public sealed record LoraTarget(string Name, Linear Base, Action<nn.Module<Tensor, Tensor>> Replace)
{
    /// The key and value projections of one cross-attention: layer names "<prefix>.to_k" and "<prefix>.to_v".
    /// `replaceProjection(name, module)` is the attention's own replace method (Attention.ReplaceProjection).
    public static IReadOnlyList<LoraTarget> KeyValue(string attentionPrefix, nn.Module<Tensor, Tensor> to_k, nn.Module<Tensor, Tensor> to_v,
        Action<string, nn.Module<Tensor, Tensor>> replaceProjection)
    {
        ArgumentNullException.ThrowIfNull(replaceProjection);
        return
        [
            new LoraTarget($"{attentionPrefix}.to_k", AsLinear(attentionPrefix, "to_k", to_k), m => replaceProjection("to_k", m)),
            new LoraTarget($"{attentionPrefix}.to_v", AsLinear(attentionPrefix, "to_v", to_v), m => replaceProjection("to_v", m)),
        ];
    }

    private static Linear AsLinear(string prefix, string name, nn.Module<Tensor, Tensor> module) => module switch
    {
        Linear l => l,
        IAdaptedLinear => throw new InvalidOperationException($"{prefix}.{name} already carries an adapter (injected twice?)"),
        null => throw new ArgumentNullException(name, $"{prefix}.{name} is null"),
        _ => throw new InvalidOperationException($"{prefix}.{name} is a {module.GetType().Name}, expected a Linear"),
    };
}

/// Puts a ContinualLoraLinear in place of every target, for training one task.
public static class LoraInjector
{
    /// Replaces each target with a ContinualLoraLinear of rank `rank`. `pastDeltas` (layer name → Σ past A·B,
    /// from DeltaMerger.PastDeltas) must cover exactly the targets; null means task 1 (no past). Returns the
    /// injected layers in target order. The base weights become frozen.
    public static IReadOnlyList<ContinualLoraLinear> Inject(IEnumerable<LoraTarget> targets, int rank,
        IReadOnlyDictionary<string, Tensor>? pastDeltas = null, Generator? generator = null)
    {
        var list = CheckedTargets(targets, pastDeltas);
        // A rank the model cannot hold is the user's option, not a bug: say so before building anything.
        var smallest = list.Select(t => t.Base.weight!).MinBy(w => Math.Min(w.shape[0], w.shape[1]))!;
        long maxRank = Math.Min(smallest.shape[0], smallest.shape[1]);
        if (rank < 1 || rank > maxRank)
            throw new InputException($"--rank {rank}: must be in 1..{maxRank} for this model (its smallest adapted layer is [{smallest.shape[0]}, {smallest.shape[1]}])");
        return Replace(list, t => new ContinualLoraLinear(t.Name, t.Base, rank, pastDeltas?[t.Name], generator));
    }

    /// Replaces each target with a DenseDeltaLinear (Custom Diffusion: the full weight trains, as a delta from zero).
    public static IReadOnlyList<DenseDeltaLinear> InjectDense(IEnumerable<LoraTarget> targets, IReadOnlyDictionary<string, Tensor>? pastDeltas = null)
    {
        var list = CheckedTargets(targets, pastDeltas);
        return Replace(list, t => new DenseDeltaLinear(t.Name, t.Base, pastDeltas?[t.Name]));
    }

    private static List<LoraTarget> CheckedTargets(IEnumerable<LoraTarget> targets, IReadOnlyDictionary<string, Tensor>? pastDeltas)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var list = targets.ToList();
        if (list.Count == 0) throw new ArgumentException("no layers to adapt", nameof(targets));
        var duplicate = list.GroupBy(t => t.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"layer '{duplicate.Key}' is targeted twice", nameof(targets));
        if (pastDeltas is not null)
        {
            var missing = list.FirstOrDefault(t => !pastDeltas.ContainsKey(t.Name));
            if (missing is not null) throw new ArgumentException($"no past delta for layer '{missing.Name}'", nameof(pastDeltas));
            var extra = pastDeltas.Keys.FirstOrDefault(k => list.All(t => t.Name != k));
            if (extra is not null) throw new ArgumentException($"past delta for '{extra}', which is not an adapted layer", nameof(pastDeltas));
        }
        return list;
    }

    /// Builds every wrapper before replacing anything, so a bad shape leaves the model untouched.
    private static IReadOnlyList<T> Replace<T>(List<LoraTarget> list, Func<LoraTarget, T> wrap) where T : nn.Module<Tensor, Tensor>
    {
        var layers = list.Select(wrap).ToList();
        for (int i = 0; i < list.Count; i++) list[i].Replace(layers[i]);
        return layers;
    }

    /// Layer name → base weight [out, in] (the Linear's own Parameter, so in-place merges change the model).
    public static Dictionary<string, Tensor> BaseWeights(IEnumerable<LoraTarget> targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var t in targets)
        {
            if (!weights.TryAdd(t.Name, t.Base.weight ?? throw new ArgumentException($"{t.Name}: Linear has no weight")))
                throw new ArgumentException($"layer '{t.Name}' is targeted twice", nameof(targets));
        }
        return weights;
    }

    /// The current task's factors of all layers: what the optimiser trains (with the token embedding).
    public static IEnumerable<Parameter> TrainableParameters(IEnumerable<ContinualLoraLinear> layers) =>
        layers.SelectMany(l => l.TrainableParameters());
}
