using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// One task's adapter as a safetensors file:
///
///     <layer>.lora_A   [out, r]   e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A
///     <layer>.lora_B   [r, in]
///     <layer>.delta    [out, in]  instead of the factors, for the dense methods (custom-diffusion*)
///     token_embedding  [1, hidden]   (alone for textual-inversion)
///     __metadata__     format=pt, cdiff_format, format_version, task, token, rank, method, base_model_hash
///
/// Writes are atomic (temp file + rename). Loading validates everything before returning, and every error
/// names the file and the key.
public static class AdapterFile
{
    public const string TokenEmbeddingKey = "token_embedding";

    public static void Save(string path, AdapterSet adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal) { [TokenEmbeddingKey] = adapter.TokenEmbedding };
        foreach (var (layer, f) in adapter.Layers)
        {
            tensors[AdapterSet.KeyA(layer)] = f.A;
            tensors[AdapterSet.KeyB(layer)] = f.B;
        }
        foreach (var (layer, d) in adapter.DenseLayers) tensors[AdapterSet.KeyDelta(layer)] = d;
        // A diverged run must not leave a file that poisons every later task's merge.
        foreach (var (key, t) in tensors) RequireFinite(t, path, key, "refusing to save: ");
        SafeTensorsFile.Save(path, tensors, adapter.Metadata.ToSafeTensorsMetadata());
    }

    /// Loads and validates one adapter file; with `expected`, it must also fit that model exactly.
    public static AdapterSet Load(string path, AdapterExpectation? expected = null)
    {
        using var file = SafeTensorsFile.Open(path);
        var metadata = AdapterMetadata.Parse(file.Metadata, path);
        var layers = LayerKeys(file, path, metadata);
        ValidateHeader(file, path, metadata, layers);
        if (expected is not null) CheckExpectation(file, path, metadata, layers, expected);
        return ReadAdapter(file, path, metadata, layers);
    }

    /// Loads the adapters of tasks 1..n (in any order; returned sorted by task). Refuses gaps or duplicate
    /// task numbers, repeated tokens, and files trained on a different base model or with a different method.
    public static IReadOnlyList<AdapterSet> LoadSequence(IEnumerable<string> paths, AdapterExpectation? expected = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var loaded = new List<(string Path, AdapterSet Adapter)>();
        try
        {
            foreach (var p in paths) loaded.Add((p, Load(p, expected)));
            CheckSequence(loaded);
            return loaded.OrderBy(l => l.Adapter.Metadata.Task).Select(l => l.Adapter).ToList();
        }
        catch
        {
            foreach (var (_, a) in loaded) a.Dispose();
            throw;
        }
    }

    private static void CheckSequence(List<(string Path, AdapterSet Adapter)> loaded)
    {
        if (loaded.Count == 0) return;
        var sorted = loaded.OrderBy(l => l.Adapter.Metadata.Task).ToList();
        var first = sorted[0];
        for (int i = 0; i < sorted.Count; i++)
        {
            var (path, a) = sorted[i];
            if (a.Metadata.Task != i + 1)
            {
                string why = i > 0 && sorted[i - 1].Adapter.Metadata.Task == a.Metadata.Task
                    ? $"task {a.Metadata.Task} is also in {sorted[i - 1].Path}"
                    : $"expected tasks 1..{sorted.Count}, task {i + 1} is missing";
                throw new AdapterFormatException($"{path}: metadata 'task' is {a.Metadata.Task}: {why}");
            }
            if (a.Metadata.BaseModelHash != first.Adapter.Metadata.BaseModelHash)
                throw new AdapterFormatException($"{path}: metadata 'base_model_hash' is '{a.Metadata.BaseModelHash}', but {first.Path} has '{first.Adapter.Metadata.BaseModelHash}' (adapters trained on different base models)");
            if (a.Metadata.Method != first.Adapter.Metadata.Method)
                throw new AdapterFormatException($"{path}: metadata 'method' is '{a.Metadata.Method.Name()}', but {first.Path} has '{first.Adapter.Metadata.Method.Name()}'");
            var sameToken = sorted.Take(i).FirstOrDefault(o => o.Adapter.Metadata.Token == a.Metadata.Token);
            if (sameToken.Adapter is not null)
                throw new AdapterFormatException($"{path}: metadata 'token' '{a.Metadata.Token}' is also used by {sameToken.Path}");
        }
    }

    /// The layers a file changes: `Factored` have `<layer>.lora_A` and `<layer>.lora_B`, `Dense` have `<layer>.delta`.
    private sealed record FileLayers(List<string> Factored, List<string> Dense)
    {
        public IEnumerable<string> All => Factored.Concat(Dense);
    }

    /// Every tensor key must be the token embedding, `<layer>.lora_A` / `<layer>.lora_B` (both of every layer) or
    /// `<layer>.delta`, and the keys must be what the metadata's method writes.
    private static FileLayers LayerKeys(SafeTensorsFile file, string path, AdapterMetadata metadata)
    {
        var factored = new SortedSet<string>(StringComparer.Ordinal);
        var dense = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var key in file.Tensors.Keys)
        {
            if (key == TokenEmbeddingKey) continue;
            string? layer = key.EndsWith(".lora_A", StringComparison.Ordinal) ? key[..^".lora_A".Length]
                : key.EndsWith(".lora_B", StringComparison.Ordinal) ? key[..^".lora_B".Length]
                : null;
            if (layer is null && key.EndsWith(".delta", StringComparison.Ordinal) && key.Length > ".delta".Length)
            {
                dense.Add(key[..^".delta".Length]);
                continue;
            }
            if (string.IsNullOrEmpty(layer))
                throw new AdapterFormatException($"{path}: unexpected key '{key}' (expected '<layer>.lora_A', '<layer>.lora_B', '<layer>.delta' or '{TokenEmbeddingKey}')");
            factored.Add(layer);
        }
        if (!file.Tensors.ContainsKey(TokenEmbeddingKey))
            throw new AdapterFormatException($"{path}: missing key '{TokenEmbeddingKey}'");
        var method = metadata.Method;
        if (method.IsLowRank())
        {
            if (factored.Count == 0) throw new AdapterFormatException($"{path}: holds no '<layer>.lora_A' / '<layer>.lora_B' keys");
            if (dense.Count > 0) throw new AdapterFormatException($"{path}: unexpected key '{AdapterSet.KeyDelta(dense.First())}' (method {method.Name()} stores low-rank factors)");
        }
        else if (method.IsDense())
        {
            if (dense.Count == 0) throw new AdapterFormatException($"{path}: holds no '<layer>.delta' keys (method {method.Name()} stores dense deltas)");
            if (factored.Count > 0) throw new AdapterFormatException($"{path}: unexpected key '{AdapterSet.KeyA(factored.First())}' (method {method.Name()} stores dense deltas)");
        }
        else if (factored.Count + dense.Count > 0)
        {
            string first = factored.Count > 0 ? AdapterSet.KeyA(factored.First()) : AdapterSet.KeyDelta(dense.First());
            throw new AdapterFormatException($"{path}: unexpected key '{first}' (method {method.Name()} stores only '{TokenEmbeddingKey}')");
        }
        foreach (var layer in factored)
        {
            foreach (var key in new[] { AdapterSet.KeyA(layer), AdapterSet.KeyB(layer) })
                if (!file.Tensors.ContainsKey(key)) throw new AdapterFormatException($"{path}: missing key '{key}'");
        }
        return new FileLayers(factored.ToList(), dense.ToList());
    }

    private static void ValidateHeader(SafeTensorsFile file, string path, AdapterMetadata metadata, FileLayers layers)
    {
        var token = file.Tensors[TokenEmbeddingKey];
        AdapterSet.ValidateTokenEmbedding(path, token.Shape, SafeTensorsFile.ToScalarType(token.DType));
        foreach (var layer in layers.Dense)
        {
            var d = file.Tensors[AdapterSet.KeyDelta(layer)];
            AdapterSet.ValidateDense(path, layer, d.Shape, SafeTensorsFile.ToScalarType(d.DType));
        }
        foreach (var layer in layers.Factored)
        {
            var a = file.Tensors[AdapterSet.KeyA(layer)];
            var b = file.Tensors[AdapterSet.KeyB(layer)];
            AdapterSet.ValidateFactorShapes(path, layer, a.Shape, SafeTensorsFile.ToScalarType(a.DType),
                b.Shape, SafeTensorsFile.ToScalarType(b.DType), metadata.Rank);
        }
    }

    private static void CheckExpectation(SafeTensorsFile file, string path, AdapterMetadata metadata, FileLayers layers, AdapterExpectation expected)
    {
        if (expected.BaseModelHash is { } hash && metadata.BaseModelHash != hash)
            throw new AdapterFormatException($"{path}: metadata 'base_model_hash' is '{metadata.BaseModelHash}', the loaded base model is '{hash}'");
        if (expected.Rank is { } rank && metadata.Rank != rank)
            throw new AdapterFormatException($"{path}: metadata 'rank' is {metadata.Rank}, expected {rank}");
        if (expected.Method is { } method && metadata.Method != method)
            throw new AdapterFormatException($"{path}: metadata 'method' is '{metadata.Method.Name()}', expected '{method.Name()}'");

        // Every method that changes the UNet changes every adapted layer; textual inversion changes none.
        Func<string, string> key = metadata.Method.IsDense() ? AdapterSet.KeyDelta : AdapterSet.KeyA;
        var present = new HashSet<string>(layers.All, StringComparer.Ordinal);
        var missing = expected.Layers.Keys.Where(k => !present.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (present.Count > 0 && missing.Count > 0)
            throw new AdapterFormatException($"{path}: missing key '{key(missing[0])}'" + More(missing.Count, "layer"));
        var extra = layers.All.Where(l => !expected.Layers.ContainsKey(l)).ToList();
        if (extra.Count > 0)
            throw new AdapterFormatException($"{path}: unexpected key '{key(extra[0])}' (the model has no such layer)" + More(extra.Count, "layer"));

        foreach (var layer in layers.Dense)
        {
            var shape = expected.Layers[layer];
            var d = file.Tensors[AdapterSet.KeyDelta(layer)];
            if (d.Shape[0] != shape.Out || d.Shape[1] != shape.In)
                throw new AdapterFormatException($"{path}: key '{AdapterSet.KeyDelta(layer)}' has shape {AdapterSet.Shape(d.Shape)}, the model's weight is {shape}");
        }
        foreach (var layer in layers.Factored)
        {
            var shape = expected.Layers[layer];
            var a = file.Tensors[AdapterSet.KeyA(layer)];
            var b = file.Tensors[AdapterSet.KeyB(layer)];
            if (a.Shape[0] != shape.Out)
                throw new AdapterFormatException($"{path}: key '{AdapterSet.KeyA(layer)}' has shape {AdapterSet.Shape(a.Shape)}, the model's weight is {shape}, expected [{shape.Out}, {metadata.Rank}]");
            if (b.Shape[1] != shape.In)
                throw new AdapterFormatException($"{path}: key '{AdapterSet.KeyB(layer)}' has shape {AdapterSet.Shape(b.Shape)}, the model's weight is {shape}, expected [{metadata.Rank}, {shape.In}]");
        }

        long hidden = file.Tensors[TokenEmbeddingKey].Shape[1];
        if (expected.TokenHiddenSize is { } h && hidden != h)
            throw new AdapterFormatException($"{path}: key '{TokenEmbeddingKey}' has shape [1, {hidden}], the text encoder expects [1, {h}]");
    }

    private static AdapterSet ReadAdapter(SafeTensorsFile file, string path, AdapterMetadata metadata, FileLayers layers)
    {
        var owned = new List<Tensor>();
        Tensor Read(string key)
        {
            var t = file.Read(key);
            owned.Add(t);
            RequireFinite(t, path, key, "");
            return t;
        }
        try
        {
            var factors = new Dictionary<string, LoraFactors>(StringComparer.Ordinal);
            foreach (var layer in layers.Factored)
                factors[layer] = new LoraFactors(Read(AdapterSet.KeyA(layer)), Read(AdapterSet.KeyB(layer)));
            var dense = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var layer in layers.Dense) dense[layer] = Read(AdapterSet.KeyDelta(layer));
            return new AdapterSet(metadata, factors, dense, Read(TokenEmbeddingKey), path);
        }
        catch
        {
            foreach (var t in owned) t.Dispose();
            throw;
        }
    }

    private static void RequireFinite(Tensor t, string path, string key, string prefix)
    {
        using var scope = torch.NewDisposeScope();
        if (!t.isfinite().all().item<bool>())
            throw new AdapterFormatException($"{path}: {prefix}key '{key}' holds NaN or infinite values");
    }

    private static string More(int count, string what) => count > 1 ? $" (and {count - 1} more {what}s)" : "";
}
