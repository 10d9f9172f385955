using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// What a merged export adds to every adapted K/V weight: the run's tasks composed as `cdiff sample --run` composes
/// them (Methods/TaskComposition). For most methods that needs only the adapters; Custom Diffusion's closed-form merge
/// needs the text encoder, so for it the base model is loaded once and the deltas are computed the way sampling
/// computes them (on the weights as loaded, float32), then added to the weights the writer streams from the file.
/// Owns the precomputed deltas (dispose it); the adapters stay the caller's.
public sealed class RunWeightDeltas : IDisposable
{
    private readonly IReadOnlyList<AdapterSet> _adapters;
    private readonly ContinualMethod _method;
    private readonly Dictionary<string, Tensor>? _precomputed;

    private RunWeightDeltas(IReadOnlyList<AdapterSet> adapters, ContinualMethod method, Dictionary<string, Tensor>? precomputed)
    {
        _adapters = adapters;
        _method = method;
        _precomputed = precomputed;
    }

    /// The deltas of `adapters` (tasks 1..t of a run on `source`).
    public static RunWeightDeltas Of(BaseModelSource source, IReadOnlyList<AdapterSet> adapters)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(adapters);
        var method = TaskComposition.MethodOf(adapters);
        if (method.Composition != PastComposition.ClosedFormMerge) return new RunWeightDeltas(adapters, method, null);
        using var model = StableDiffusion.Load(source);
        foreach (var a in adapters) model.AddConcept(a.Metadata.Token, a.TokenEmbedding);
        var deltas = TaskComposition.ForSampling(method, model, RunModel.BaseWeights(model), adapters);
        return new RunWeightDeltas(adapters, method, deltas);
    }

    /// W ← W + the run's delta, in place, for every layer of `weights` (layer name → [out, in]).
    public void MergeInto(IReadOnlyDictionary<string, Tensor> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (_precomputed is null)
        {
            TaskComposition.MergeInto(_method, null, weights, _adapters);
            return;
        }
        using var noGrad = torch.no_grad();
        foreach (var (name, w) in weights)
        {
            if (!_precomputed.TryGetValue(name, out var delta)) throw new InvalidOperationException($"no merged delta for layer '{name}'");
            using var d = delta.to(w.dtype, w.device);
            w.AddInPlace(d);
        }
    }

    public void Dispose()
    {
        if (_precomputed is not null) foreach (var t in _precomputed.Values) t.Dispose();
    }
}
