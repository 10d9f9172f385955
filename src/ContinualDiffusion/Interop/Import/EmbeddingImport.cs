using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Import;

/// A textual-inversion embedding read from another tool's file: the word to type and its vectors [n, D] (float32,
/// owned by this object).
public sealed class ForeignEmbedding(string path, string word, Tensor vectors) : IDisposable
{
    public string Path { get; } = path;
    public string Word { get; } = word;
    public Tensor Vectors { get; } = vectors;
    public int Count => (int)Vectors.shape[0];
    public void Dispose() => Vectors.Dispose();
}

/// Reads textual-inversion files in the forms other tools write (safetensors only; a pickle is refused):
/// - A1111 / Forge / ComfyUI: one tensor `emb_params` [n, D] (or [D]); the word is the file's stem, as A1111 names
///   an embedding (its `.pt` form, a pickle with `string_to_param`, is refused);
/// - diffusers `loaders/textual_inversion.py`: one tensor keyed by its token, `{token: [D] or [n, D]}`; the word is the
///   key (`learned_embeds.safetensors` from the concept library: `<cat-toy>`).
/// `:WORD` overrides either, as `load_textual_inversion(..., token=WORD)` does. SDXL embeddings (`clip_l` + `clip_g`)
/// are refused. An [n, D] embedding gives n tokens WORD, WORD_1, …, and WORD in a prompt stands for all of them
/// (EmbeddingWords).
public static class EmbeddingImport
{
    public const string A1111Key = "emb_params";

    /// The word a file names its embedding by when no :WORD is given: the stem for A1111's `emb_params` (or a converted
    /// `string_to_param` / `*` key), else the diffusers token key. Null when that is not a word one can type.
    public static string? DefaultWord(string path, string key)
    {
        bool a1111 = key == A1111Key || key == "*" || key.StartsWith("string_to_param", StringComparison.Ordinal);
        var word = a1111 ? System.IO.Path.GetFileNameWithoutExtension(path) : key;
        return EmbeddingWords.IsValid(word) ? word : null;
    }

    /// Reads and checks one embedding for a text encoder of width `hiddenSize` (no model changes).
    public static ForeignEmbedding Read(EmbeddingSpec spec, int hiddenSize)
    {
        ArgumentNullException.ThrowIfNull(spec);
        PickleRefusal.ThrowIfPickle(spec.Path, EmbeddingSpec.PickleWhat);
        using var file = SafeTensorsFile.Open(spec.Path);
        var keys = file.Tensors.Keys.Order(StringComparer.Ordinal).ToList();
        if (keys.Contains("clip_l") && keys.Contains("clip_g"))
            throw new InputException($"{spec.Path}: an SDXL embedding (keys 'clip_l' and 'clip_g'); cdiff runs SD 1.x/2.x");
        if (keys.Count != 1)
            throw new InputException($"{spec.Path}: holds {keys.Count} tensors ({string.Join(", ", keys.Take(3).Select(k => $"'{k}'"))}{(keys.Count > 3 ? ", …" : "")}); a textual-inversion file holds one ('emb_params' [n, D], or {{token: [D]}})");
        var key = keys[0];
        var word = spec.Word ?? DefaultWord(spec.Path, key)
            ?? throw new InputException($"{spec.Path}: its token '{key}' is not a word to type in a prompt; name one with {EmbeddingSpec.Option} FILE:WORD");
        var shape = file.Tensors[key].Shape;
        long[] rows = shape.Length switch { 1 => [1, shape[0]], 2 => shape, _ => [] };
        if (rows.Length == 0 || rows[0] < 1)
            throw new InputException($"{spec.Path}: tensor '{key}' is [{string.Join(", ", shape)}], expected [D] or [n, D]");
        if (rows[1] != hiddenSize)
            throw new InputException($"{spec.Path}: tensor '{key}' is [{string.Join(", ", shape)}], vectors of width {rows[1]}, but this model's text encoder has width {hiddenSize} (an embedding for another base model, e.g. SD 2 on SD 1?)");
        using var scope = torch.NewDisposeScope();
        var vectors = file.Read(key).to_type(ScalarType.Float32).reshape(rows).contiguous().clone();
        return new ForeignEmbedding(spec.Path, word, vectors.MoveToOuterDisposeScope());
    }

    /// Adds the embedding to the model under its word. A word (or WORD_i) the model already has is an error.
    public static IReadOnlyList<long> Add(StableDiffusion model, ForeignEmbedding embedding)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(embedding);
        try { return model.AddEmbedding(embedding.Word, embedding.Vectors); }
        catch (ArgumentException e) { throw new InputException($"{embedding.Path}: cannot add '{embedding.Word}': {e.Message}"); }
    }
}
