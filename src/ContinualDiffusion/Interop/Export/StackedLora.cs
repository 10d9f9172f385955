using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// One layer of an exported LoRA: Up [out, R] and Down [R, in], delta = Up·Down exactly (no alpha/R factor: writers
/// choose the alpha that makes their tool apply a scale of exactly 1).
public sealed record StackedLayer(string Name, Tensor Up, Tensor Down)
{
    public long Rank => Up.shape[1];
}

/// The sum of tasks 1..t's deltas as ONE LoRA per layer, represented exactly by concatenating the tasks' factors:
///
///     Σ_t A_t B_t = [A_1 … A_t] · [B_1; …; B_t]      (A_t [out, r_t] up, B_t [r_t, in] down)
///
/// so Up = the A's side by side [out, Σr], Down = the B's stacked [Σr, in]. This is what `cdiff sample --run` merges
/// (DeltaMerger: W + Σ A·B), with nothing approximated. `Truncate` gives the rank-N SVD form instead (LowRank).
/// The factors are float32 CPU tensors owned by this object (dispose it).
public sealed class StackedLora : IDisposable
{
    private readonly List<StackedLayer> _layers;

    public IReadOnlyList<StackedLayer> Layers => _layers;

    /// The rank every layer has (Σ r_t for a concatenation, N after truncation).
    public int Rank { get; }

    private StackedLora(List<StackedLayer> layers)
    {
        _layers = layers;
        Rank = layers.Count == 0 ? 0 : (int)layers[0].Rank;
    }

    /// Concatenates the adapters' factors, layer by layer in `layerOrder` (every adapter must have exactly these
    /// layers, which AdapterFile.LoadSequence with an expectation has checked).
    public static StackedLora Concatenate(IReadOnlyList<AdapterSet> adapters, IEnumerable<string> layerOrder)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        if (adapters.Count == 0) throw new ArgumentException("no adapters to export", nameof(adapters));
        var layers = new List<StackedLayer>();
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var name in layerOrder)
            {
                using var scope = torch.NewDisposeScope();
                var ups = adapters.Select(a => Factor(a, name).A.to_type(ScalarType.Float32)).ToList();
                var downs = adapters.Select(a => Factor(a, name).B.to_type(ScalarType.Float32)).ToList();
                var up = torch.cat(ups, 1).contiguous();
                var down = torch.cat(downs, 0).contiguous();
                layers.Add(new StackedLayer(name, up.MoveToOuterDisposeScope(), down.MoveToOuterDisposeScope()));
            }
            return new StackedLora(layers);
        }
        catch
        {
            foreach (var l in layers) { l.Up.Dispose(); l.Down.Dispose(); }
            throw;
        }
    }

    /// Takes ownership of already-built layers (readers and tests).
    public static StackedLora FromLayers(IEnumerable<StackedLayer> layers)
    {
        var list = layers.ToList();
        if (list.Select(l => l.Rank).Distinct().Count() > 1) throw new ArgumentException("layers of different ranks", nameof(layers));
        return new StackedLora(list);
    }

    private static LoraFactors Factor(AdapterSet adapter, string layer) =>
        adapter.Layers.TryGetValue(layer, out var f)
            ? f
            : throw new AdapterFormatException($"adapter of task {adapter.Metadata.Task} ({adapter.Metadata.Token}): missing key '{layer}.lora_A'");

    /// Up·Down per layer in float64: the delta this LoRA adds to each weight (the caller owns the tensors).
    public Dictionary<string, Tensor> Deltas()
    {
        var deltas = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = torch.no_grad();
        foreach (var l in _layers)
        {
            using var scope = torch.NewDisposeScope();
            deltas[l.Name] = l.Up.to_type(ScalarType.Float64).matmul(l.Down.to_type(ScalarType.Float64)).MoveToOuterDisposeScope();
        }
        return deltas;
    }

    /// The rank-`rank` truncated SVD of every layer's delta (LowRank.Truncate), with the reconstruction error over all
    /// layers. `rank` must be in 1..min(out, in) of the smallest layer (InputException otherwise).
    public (StackedLora Lora, LowRankError Error) Truncate(int rank)
    {
        long maxRank = _layers.Min(l => Math.Min(l.Up.shape[0], l.Down.shape[1]));
        if (rank < 1 || rank > maxRank)
            throw new InputException($"--rank {rank}: must be in 1..{maxRank} for this model (its smallest adapted layer allows rank {maxRank})");
        var layers = new List<StackedLayer>();
        double residual = 0, total = 0, worst = 0;
        string worstLayer = "";
        try
        {
            foreach (var l in _layers)
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var delta = l.Up.to_type(ScalarType.Float64).matmul(l.Down.to_type(ScalarType.Float64));
                var t = LowRank.Truncate(delta, rank);
                layers.Add(new StackedLayer(l.Name, t.Up.MoveToOuterDisposeScope(), t.Down.MoveToOuterDisposeScope()));
                residual += t.ResidualSquared;
                total += t.NormSquared;
                double relative = t.RelativeError;
                if (relative > worst || worstLayer.Length == 0) { worst = relative; worstLayer = l.Name; }
            }
            double overall = total > 0 ? Math.Sqrt(residual / total) : 0;
            return (new StackedLora(layers), new LowRankError(rank, overall, worst, worstLayer));
        }
        catch
        {
            foreach (var l in layers) { l.Up.Dispose(); l.Down.Dispose(); }
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var l in _layers)
        {
            l.Up.Dispose();
            l.Down.Dispose();
        }
    }
}

/// How far a rank-N truncation is from the exact summed deltas: ‖Δ − Δ_N‖_F / ‖Δ‖_F over all layers together, and the
/// largest per-layer relative error with its layer.
public sealed record LowRankError(int Rank, double Relative, double WorstLayerRelative, string WorstLayer)
{
    public override string ToString() =>
        $"rank {Rank}: relative reconstruction error {Relative:E3} over all layers (worst layer {WorstLayerRelative:E3}, {WorstLayer})";
}
