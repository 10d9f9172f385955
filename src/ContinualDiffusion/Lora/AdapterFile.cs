using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// One task's adapter as a safetensors file:
///
///     <layer>.lora_A   [out, r]   e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A
///     <layer>.lora_B   [r, in]
///     token_embedding  [1, hidden]
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
        // A diverged run must not leave a file that poisons every later task's merge.
        foreach (var (key, t) in tensors) RequireFinite(t, path, key, "refusing to save: ");
        SafeTensorsFile.Save(path, tensors, adapter.Metadata.ToSafeTensorsMetadata());
    }

    /// Loads and validates one adapter file; with `expected`, it must also fit that model exactly.
    public static AdapterSet Load(string path, AdapterExpectation? expected = null)
    {
        using var file = SafeTensorsFile.Open(path);
        var metadata = AdapterMetadata.Parse(file.Metadata, path);
        var layers = LayerKeys(file, path);
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

    /// Every tensor key must be the token embedding or `<layer>.lora_A` / `<layer>.lora_B`, and every layer
    /// must have both factors.
    private static List<string> LayerKeys(SafeTensorsFile file, string path)
    {
        var layers = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var key in file.Tensors.Keys)
        {
            if (key == TokenEmbeddingKey) continue;
            string? layer = key.EndsWith(".lora_A", StringComparison.Ordinal) ? key[..^".lora_A".Length]
                : key.EndsWith(".lora_B", StringComparison.Ordinal) ? key[..^".lora_B".Length]
                : null;
            if (string.IsNullOrEmpty(layer))
                throw new AdapterFormatException($"{path}: unexpected key '{key}' (expected '<layer>.lora_A', '<layer>.lora_B' or '{TokenEmbeddingKey}')");
            layers.Add(layer);
        }
        if (!file.Tensors.ContainsKey(TokenEmbeddingKey))
            throw new AdapterFormatException($"{path}: missing key '{TokenEmbeddingKey}'");
        if (layers.Count == 0)
            throw new AdapterFormatException($"{path}: holds no '<layer>.lora_A' / '<layer>.lora_B' keys");
        foreach (var layer in layers)
        {
            foreach (var key in new[] { AdapterSet.KeyA(layer), AdapterSet.KeyB(layer) })
                if (!file.Tensors.ContainsKey(key)) throw new AdapterFormatException($"{path}: missing key '{key}'");
        }
        return layers.ToList();
    }

    private static void ValidateHeader(SafeTensorsFile file, string path, AdapterMetadata metadata, List<string> layers)
    {
        var token = file.Tensors[TokenEmbeddingKey];
        AdapterSet.ValidateTokenEmbedding(path, token.Shape, SafeTensorsFile.ToScalarType(token.DType));
        foreach (var layer in layers)
        {
            var a = file.Tensors[AdapterSet.KeyA(layer)];
            var b = file.Tensors[AdapterSet.KeyB(layer)];
            AdapterSet.ValidateFactorShapes(path, layer, a.Shape, SafeTensorsFile.ToScalarType(a.DType),
                b.Shape, SafeTensorsFile.ToScalarType(b.DType), metadata.Rank);
        }
    }

    private static void CheckExpectation(SafeTensorsFile file, string path, AdapterMetadata metadata, List<string> layers, AdapterExpectation expected)
    {
        if (expected.BaseModelHash is { } hash && metadata.BaseModelHash != hash)
            throw new AdapterFormatException($"{path}: metadata 'base_model_hash' is '{metadata.BaseModelHash}', the loaded base model is '{hash}'");
        if (expected.Rank is { } rank && metadata.Rank != rank)
            throw new AdapterFormatException($"{path}: metadata 'rank' is {metadata.Rank}, expected {rank}");
        if (expected.Method is { } method && metadata.Method != method)
            throw new AdapterFormatException($"{path}: metadata 'method' is '{metadata.Method.Name()}', expected '{method.Name()}'");

        var present = new HashSet<string>(layers, StringComparer.Ordinal);
        var missing = expected.Layers.Keys.Where(k => !present.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            throw new AdapterFormatException($"{path}: missing key '{AdapterSet.KeyA(missing[0])}'" + More(missing.Count, "layer"));
        var extra = layers.Where(l => !expected.Layers.ContainsKey(l)).ToList();
        if (extra.Count > 0)
            throw new AdapterFormatException($"{path}: unexpected key '{AdapterSet.KeyA(extra[0])}' (the model has no such layer)" + More(extra.Count, "layer"));

        foreach (var layer in layers)
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

    private static AdapterSet ReadAdapter(SafeTensorsFile file, string path, AdapterMetadata metadata, List<string> layers)
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
            foreach (var layer in layers)
                factors[layer] = new LoraFactors(Read(AdapterSet.KeyA(layer)), Read(AdapterSet.KeyB(layer)));
            return new AdapterSet(metadata, factors, Read(TokenEmbeddingKey), path);
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
