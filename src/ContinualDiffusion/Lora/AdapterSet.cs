using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// An adapter file or adapter set that is malformed or does not fit the model: the message names the file
/// (or the adapter) and the key.
public sealed class AdapterFormatException(string message) : InputException(message);

/// One layer's low-rank factors: A is [out, r] (up), B is [r, in] (down), delta = A·B is [out, in].
public sealed record LoraFactors(Tensor A, Tensor B)
{
    public long Rank => A.shape[1];
    public long OutFeatures => A.shape[0];
    public long InFeatures => B.shape[1];

    /// A·B, [out, in].
    public Tensor Delta() => A.matmul(B);
}

/// One task's adapter: what it changed in every adapted layer (keyed by layer name, e.g.
/// "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k") — low-rank factors (`Layers`, the LoRA methods) or
/// a dense delta (`DenseLayers`, Custom Diffusion) or nothing (textual inversion) — the learned token's embedding
/// [1, hidden] and the metadata. Construction validates everything, so an AdapterSet that exists is consistent.
/// Owns its tensors (dispose it).
public sealed class AdapterSet : IDisposable
{
    private readonly Dictionary<string, LoraFactors> _layers;
    private readonly Dictionary<string, Tensor> _dense;

    public AdapterMetadata Metadata { get; }
    /// Low-rank factors per layer (empty for a method without them).
    public IReadOnlyDictionary<string, LoraFactors> Layers => _layers;
    /// Dense [out, in] deltas per layer (Custom Diffusion; empty otherwise).
    public IReadOnlyDictionary<string, Tensor> DenseLayers => _dense;
    public Tensor TokenEmbedding { get; }

    /// The layers this adapter changes (none for textual inversion).
    public IEnumerable<string> LayerNames => _layers.Count > 0 ? _layers.Keys : _dense.Keys;

    /// Takes ownership of the tensors. Throws AdapterFormatException on inconsistent shapes or ranks.
    public AdapterSet(AdapterMetadata metadata, IReadOnlyDictionary<string, LoraFactors> layers, Tensor tokenEmbedding)
        : this(metadata, layers, new Dictionary<string, Tensor>(), tokenEmbedding, $"adapter for task {metadata?.Task}")
    {
    }

    /// An adapter of dense deltas (Custom Diffusion) or, with none, of the token alone (textual inversion).
    public AdapterSet(AdapterMetadata metadata, IReadOnlyDictionary<string, Tensor> denseLayers, Tensor tokenEmbedding)
        : this(metadata, new Dictionary<string, LoraFactors>(), denseLayers, tokenEmbedding, $"adapter for task {metadata?.Task}")
    {
    }

    internal AdapterSet(AdapterMetadata metadata, IReadOnlyDictionary<string, LoraFactors> layers, IReadOnlyDictionary<string, Tensor> dense,
        Tensor tokenEmbedding, string source)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(dense);
        ArgumentNullException.ThrowIfNull(tokenEmbedding);
        metadata.Validate(source);
        var method = metadata.Method;
        if (method.IsLowRank() && (layers.Count == 0 || dense.Count > 0))
            throw new AdapterFormatException($"{source}: method {method.Name()} needs '<layer>.lora_A' / '<layer>.lora_B' keys and no '<layer>.delta' keys");
        if (method.IsDense() && (dense.Count == 0 || layers.Count > 0))
            throw new AdapterFormatException($"{source}: method {method.Name()} needs '<layer>.delta' keys and no low-rank factors");
        if (!method.IsLowRank() && !method.IsDense() && (dense.Count > 0 || layers.Count > 0))
            throw new AdapterFormatException($"{source}: method {method.Name()} trains only the token; the adapter must hold '{AdapterFile.TokenEmbeddingKey}' alone");
        foreach (var (name, factors) in layers) ValidateLayer(source, name, factors, metadata.Rank);
        foreach (var (name, delta) in dense) ValidateDense(source, name, delta.shape, delta.dtype);
        ValidateTokenEmbedding(source, tokenEmbedding.shape, tokenEmbedding.dtype);
        Metadata = metadata;
        _layers = new Dictionary<string, LoraFactors>(layers, StringComparer.Ordinal);
        _dense = new Dictionary<string, Tensor>(dense, StringComparer.Ordinal);
        TokenEmbedding = tokenEmbedding;
    }

    /// The layer's delta [out, in] (A·B, or a copy of the dense delta), a new tensor the caller owns; null when this
    /// adapter does not change the layer.
    public Tensor? Delta(string layer)
    {
        if (_layers.TryGetValue(layer, out var f)) return f.Delta();
        return _dense.TryGetValue(layer, out var d) ? d.clone() : null;
    }

    /// The number of trained values of the layers (factors or dense deltas; the token embedding not counted).
    public long LayerParameterCount =>
        _layers.Values.Sum(f => f.A.numel() + f.B.numel()) + _dense.Values.Sum(d => d.numel());

    /// Snapshots the current factors of trained layers (detached CPU copies) with the learned token embedding.
    public static AdapterSet FromLayers(IEnumerable<ContinualLoraLinear> layers, Tensor tokenEmbedding, AdapterMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(tokenEmbedding);
        var factors = new Dictionary<string, LoraFactors>(StringComparer.Ordinal);
        foreach (var layer in layers)
        {
            if (!factors.TryAdd(layer.LayerName, new LoraFactors(Snapshot(layer.LoraA), Snapshot(layer.LoraB))))
                throw new AdapterFormatException($"adapter for task {metadata.Task}: layer '{layer.LayerName}' appears twice");
        }
        Tensor token;
        using (torch.NewDisposeScope())
            token = Snapshot(tokenEmbedding.dim() == 1 ? tokenEmbedding.unsqueeze(0) : tokenEmbedding).MoveToOuterDisposeScope();
        return new AdapterSet(metadata, factors, token);
    }

    /// Snapshots trained dense deltas (detached CPU copies, `layer name → [out, in]`) with the token embedding;
    /// an empty map gives a token-only adapter (textual inversion).
    public static AdapterSet FromDense(IEnumerable<(string Layer, Tensor Delta)> deltas, Tensor tokenEmbedding, AdapterMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(deltas);
        ArgumentNullException.ThrowIfNull(tokenEmbedding);
        var dense = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (layer, delta) in deltas)
        {
            if (!dense.TryAdd(layer, Snapshot(delta)))
                throw new AdapterFormatException($"adapter for task {metadata.Task}: layer '{layer}' appears twice");
        }
        Tensor token;
        using (torch.NewDisposeScope())
            token = Snapshot(tokenEmbedding.dim() == 1 ? tokenEmbedding.unsqueeze(0) : tokenEmbedding).MoveToOuterDisposeScope();
        return new AdapterSet(metadata, dense, token);
    }

    private static Tensor Snapshot(Tensor t)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        return t.detach().cpu().clone().MoveToOuterDisposeScope();
    }

    internal static string KeyA(string layer) => layer + ".lora_A";
    internal static string KeyB(string layer) => layer + ".lora_B";
    internal static string KeyDelta(string layer) => layer + ".delta";

    /// A dense delta must be a floating-point [out, in] matrix.
    internal static void ValidateDense(string source, string layer, long[] shape, ScalarType dtype)
    {
        if (string.IsNullOrWhiteSpace(layer) || layer == AdapterFile.TokenEmbeddingKey)
            throw new AdapterFormatException($"{source}: '{layer}' is not a valid layer name");
        if (!IsFloat(dtype))
            throw new AdapterFormatException($"{source}: key '{KeyDelta(layer)}' has dtype {dtype}, expected floating point");
        if (shape.Length != 2 || shape[0] < 1 || shape[1] < 1)
            throw new AdapterFormatException($"{source}: key '{KeyDelta(layer)}' has shape {Shape(shape)}, expected [out, in]");
    }

    internal static void ValidateLayer(string source, string name, LoraFactors factors, int rank)
    {
        if (string.IsNullOrWhiteSpace(name) || name == AdapterFile.TokenEmbeddingKey)
            throw new AdapterFormatException($"{source}: '{name}' is not a valid layer name");
        ValidateFactorShapes(source, name, factors.A.shape, factors.A.dtype, factors.B.shape, factors.B.dtype, rank);
    }

    /// Shapes must be A [out, rank], B [rank, in] with the rank from the metadata; floating point only.
    internal static void ValidateFactorShapes(string source, string layer, long[] a, ScalarType aType, long[] b, ScalarType bType, int rank)
    {
        if (!IsFloat(aType))
            throw new AdapterFormatException($"{source}: key '{KeyA(layer)}' has dtype {aType}, expected floating point");
        if (!IsFloat(bType))
            throw new AdapterFormatException($"{source}: key '{KeyB(layer)}' has dtype {bType}, expected floating point");
        if (a.Length != 2 || a[1] != rank || a[0] < 1)
            throw new AdapterFormatException($"{source}: key '{KeyA(layer)}' has shape {Shape(a)}, expected [out, {rank}] (rank from metadata)");
        if (b.Length != 2 || b[0] != rank || b[1] < 1)
            throw new AdapterFormatException($"{source}: key '{KeyB(layer)}' has shape {Shape(b)}, expected [{rank}, in] (rank from metadata)");
    }

    internal static void ValidateTokenEmbedding(string source, long[] shape, ScalarType dtype)
    {
        if (!IsFloat(dtype))
            throw new AdapterFormatException($"{source}: key '{AdapterFile.TokenEmbeddingKey}' has dtype {dtype}, expected floating point");
        if (shape.Length != 2 || shape[0] != 1 || shape[1] < 1)
            throw new AdapterFormatException($"{source}: key '{AdapterFile.TokenEmbeddingKey}' has shape {Shape(shape)}, expected [1, hidden]");
    }

    private static bool IsFloat(ScalarType t) =>
        t is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float64;

    internal static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    public void Dispose()
    {
        foreach (var f in _layers.Values)
        {
            f.A.Dispose();
            f.B.Dispose();
        }
        foreach (var d in _dense.Values) d.Dispose();
        TokenEmbedding.Dispose();
    }
}
