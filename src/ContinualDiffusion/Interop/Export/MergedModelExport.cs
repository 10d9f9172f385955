using System.Text.Json;
using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// A complete diffusers folder (the layout `StableDiffusionPipeline.save_pretrained` writes) of the run's model: the
/// base folder's components copied, the tasks' summed deltas merged into the UNet's cross-attention K/V weights, and the
/// concept tokens added to the tokenizer (as added tokens, transformers' `added_tokens_decoder` in
/// tokenizer_config.json and the older `added_tokens.json`, as a textual-inversion `save_pretrained` leaves them) and
/// as rows appended to the text encoder's token embedding (config `vocab_size` grown to match).
///
/// It is built to be the same model `cdiff sample --run` builds: the merge is RunWeightDeltas (the run's method's
/// composition, TaskComposition) on the weights
/// as read from the base file (float32), and each token gets the id ClipTokenizer.AddConceptToken would give it and
/// that id's embedding row. Changed tensors (the merged weights, the grown embedding) are written in float32 even
/// when the base folder's weights are half precision, so nothing is rounded; every other tensor is copied bit for bit.
/// Other weight variants in unet/ and text_encoder/ (`.fp16.safetensors`, `.bin`) are not copied: they would be
/// the unmerged base.
public static class MergedModelExport
{
    public const string TokenEmbeddingKey = "text_model.embeddings.token_embedding.weight";
    private static readonly string[] WeightExtensions = [".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".pb", ".h5"];

    /// Writes the merged model into `outDir` (an empty folder). Returns each token with its id.
    public static IReadOnlyList<(string Token, long Id)> Write(string outDir, DiffusersFolder folder, IReadOnlyList<AdapterSet> adapters, IReadOnlyList<string> layers,
        RunWeightDeltas deltas)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(deltas);
        CopyComponents(folder, outDir);
        WriteUnet(folder.UnetWeightsPath, Path.Combine(outDir, "unet", "diffusion_pytorch_model.safetensors"), deltas, layers);
        var ids = ConceptIds(folder.TokenizerDir, adapters);
        int rows = WriteTextEncoder(folder, Path.Combine(outDir, "text_encoder"), adapters, ids);
        var tokens = ids.Select((id, i) => (adapters[i].Metadata.Token, id)).ToList();
        WriteTokenizer(Path.Combine(outDir, "tokenizer"), tokens);
        DiffusersFolder.Open(outDir); // what was written opens as a model folder
        return tokens;
    }

    /// model_index.json and every component folder it names (the five SD ones at least), unet/ and text_encoder/
    /// without their weight files.
    private static void CopyComponents(DiffusersFolder folder, string outDir)
    {
        File.Copy(Path.Combine(folder.Root, "model_index.json"), Path.Combine(outDir, "model_index.json"));
        var components = new SortedSet<string>(StringComparer.Ordinal) { "unet", "vae", "text_encoder", "tokenizer", "scheduler" };
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder.Root, "model_index.json"))))
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.Array && p.Value.GetArrayLength() == 2 && p.Value[0].ValueKind == JsonValueKind.String
                    && !p.Name.Contains('/') && !p.Name.Contains('\\') && p.Name is not ("." or ".."))
                    components.Add(p.Name);
        foreach (var c in components)
        {
            var from = Path.Combine(folder.Root, c);
            if (!Directory.Exists(from)) continue;
            bool skipWeights = c is "unet" or "text_encoder";
            CopyTree(from, Path.Combine(outDir, c), skipWeights);
        }
    }

    private static void CopyTree(string from, string to, bool skipWeights)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.EnumerateFiles(from))
        {
            if (skipWeights && WeightExtensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase))) continue;
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
        foreach (var d in Directory.EnumerateDirectories(from))
            CopyTree(d, Path.Combine(to, Path.GetFileName(d)), skipWeights);
    }

    /// The UNet file with `<layer>.weight` ← W + Σ A·B for every adapted layer, streamed tensor by tensor.
    private static void WriteUnet(string basePath, string outPath, RunWeightDeltas deltas, IReadOnlyList<string> layers)
    {
        using var file = SafeTensorsFile.Open(basePath);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var layer in layers)
            {
                var key = layer + ".weight";
                if (!file.Tensors.ContainsKey(key)) throw new InputException($"{basePath}: missing key '{key}' (an adapted layer)");
                weights[layer] = file.Read(key);
            }
            deltas.MergeInto(weights);
            var byKey = weights.ToDictionary(w => w.Key + ".weight", w => w.Value, StringComparer.Ordinal);
            var entries = file.Tensors.Values.Select(info => byKey.TryGetValue(info.Name, out var merged)
                ? new SafeTensorEntry(info.Name, merged.dtype, merged.shape, () => merged, DisposeAfterWrite: false)
                : new SafeTensorEntry(info.Name, SafeTensorsFile.ToScalarType(info.DType), info.Shape, () => file.Read(info.Name, keepDType: true))).ToList();
            SafeTensorsFile.Save(outPath, entries, file.Metadata);
        }
        finally
        {
            foreach (var w in weights.Values) w.Dispose();
        }
    }

    /// The ids `cdiff sample --run` gives the tokens on this tokenizer (ClipTokenizer.AddConceptToken, in task order).
    private static List<long> ConceptIds(string tokenizerDir, IReadOnlyList<AdapterSet> adapters)
    {
        var tokenizer = ClipTokenizer.FromFolder(tokenizerDir);
        var ids = new List<long>();
        foreach (var a in adapters)
        {
            try { ids.Add(tokenizer.AddConceptToken(a.Metadata.Token)); }
            catch (ArgumentException e) { throw new InputException($"{tokenizerDir}: cannot add concept token {a.Metadata.Token}: {e.Message}"); }
        }
        return ids;
    }

    /// model.safetensors with the token embedding grown to hold every concept id, and config.json's vocab_size to match.
    private static int WriteTextEncoder(DiffusersFolder folder, string outDir, IReadOnlyList<AdapterSet> adapters, List<long> ids)
    {
        using var file = SafeTensorsFile.Open(folder.TextEncoderWeightsPath);
        if (!file.Tensors.TryGetValue(TokenEmbeddingKey, out var info) || info.Shape.Length != 2)
            throw new InputException($"{folder.TextEncoderWeightsPath}: missing key '{TokenEmbeddingKey}' [vocab, hidden]");
        long vocab = info.Shape[0], hidden = info.Shape[1];
        long rows = Math.Max(vocab, ids.Max() + 1);
        Tensor Grown()
        {
            using var noGrad = torch.no_grad();
            var grown = torch.zeros(rows, hidden, ScalarType.Float32);
            grown.narrow(0, 0, vocab).copy_(file.Read(TokenEmbeddingKey).to_type(ScalarType.Float32));
            for (int i = 0; i < ids.Count; i++)
                grown[ids[i]].copy_(adapters[i].TokenEmbedding.reshape(hidden).to_type(ScalarType.Float32));
            return grown;
        }
        var entries = file.Tensors.Values.Select(t => t.Name == TokenEmbeddingKey
            ? new SafeTensorEntry(t.Name, ScalarType.Float32, [rows, hidden], Grown)
            : new SafeTensorEntry(t.Name, SafeTensorsFile.ToScalarType(t.DType), t.Shape, () => file.Read(t.Name, keepDType: true))).ToList();
        SafeTensorsFile.Save(Path.Combine(outDir, "model.safetensors"), entries, file.Metadata);

        var config = JsonNode.Parse(File.ReadAllText(folder.TextEncoderConfigPath)) as JsonObject
                     ?? throw new InputException($"{folder.TextEncoderConfigPath}: expected a JSON object");
        config["vocab_size"] = rows;
        AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return (int)rows;
    }

    /// tokenizer_config.json's added_tokens_decoder and added_tokens.json gain the concept tokens (case-sensitive, not
    /// special), which transformers' CLIPTokenizer and cdiff's ClipTokenizerFiles both read.
    private static void WriteTokenizer(string dir, IReadOnlyList<(string Token, long Id)> tokens)
    {
        var configPath = Path.Combine(dir, ClipTokenizerFiles.TokenizerConfigFileName);
        var config = File.Exists(configPath)
            ? JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new InputException($"{configPath}: expected a JSON object")
            : new JsonObject { ["tokenizer_class"] = "CLIPTokenizer" };
        if (config["added_tokens_decoder"] is not JsonObject decoder)
        {
            decoder = new JsonObject();
            config["added_tokens_decoder"] = decoder;
        }
        foreach (var (token, id) in tokens)
            decoder[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = token, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false, ["single_word"] = false, ["special"] = false,
            };
        var indented = new JsonSerializerOptions { WriteIndented = true };
        AtomicFile.WriteAllText(configPath, config.ToJsonString(indented));

        var addedPath = Path.Combine(dir, "added_tokens.json");
        var added = File.Exists(addedPath)
            ? JsonNode.Parse(File.ReadAllText(addedPath)) as JsonObject ?? throw new InputException($"{addedPath}: expected a JSON object")
            : new JsonObject();
        foreach (var (token, id) in tokens) added[token] = id;
        AtomicFile.WriteAllText(addedPath, added.ToJsonString(indented));
    }
}
