using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// A base weight's shape: [Out, In].
public readonly record struct LayerShape(long Out, long In)
{
    public override string ToString() => $"[{Out}, {In}]";
}

/// What an adapter file must match to be used with a given model: exactly these layers with these weight
/// shapes, and optionally the token embedding width, the base model hash, the rank and the method.
public sealed record AdapterExpectation(IReadOnlyDictionary<string, LayerShape> Layers)
{
    public long? TokenHiddenSize { get; init; }
    public string? BaseModelHash { get; init; }
    public int? Rank { get; init; }
    public AdapterMethod? Method { get; init; }

    /// The layers of a model from its base weights (layer name → weight [out, in]).
    public static AdapterExpectation ForWeights(IReadOnlyDictionary<string, Tensor> baseWeights)
    {
        ArgumentNullException.ThrowIfNull(baseWeights);
        var layers = new Dictionary<string, LayerShape>(StringComparer.Ordinal);
        foreach (var (name, w) in baseWeights)
        {
            if (w.dim() != 2) throw new ArgumentException($"{name}: base weight must be [out, in], got [{string.Join(", ", w.shape)}]");
            layers[name] = new LayerShape(w.shape[0], w.shape[1]);
        }
        return new AdapterExpectation(layers);
    }

    /// The layers of a model after injection.
    public static AdapterExpectation ForLayers(IEnumerable<ContinualLoraLinear> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        var shapes = new Dictionary<string, LayerShape>(StringComparer.Ordinal);
        foreach (var l in layers) shapes[l.LayerName] = new LayerShape(l.OutFeatures, l.InFeatures);
        return new AdapterExpectation(shapes);
    }
}
