using ContinualDiffusion.Text;

namespace ContinualDiffusion.Interop.Import;

/// One `--embedding FILE[:WORD]`: a textual-inversion embedding file and, optionally, the word to type for it (default:
/// the file's own name for it, see EmbeddingImport.DefaultWord). A folder means its `learned_embeds.safetensors`, as
/// diffusers' `load_textual_inversion(DIR)` reads it.
public sealed record EmbeddingSpec(string Path, string? Word)
{
    public const string Option = "--embedding";
    public const string DiffusersFileName = "learned_embeds.safetensors";

    /// Why a pickled embedding is refused: A1111's `.pt` embeddings keep the vectors in a pickled `string_to_param`
    /// (diffusers `loaders/textual_inversion.py` reads that form only through torch.load).
    public const string PickleWhat = "the embedding (A1111's .pt/.bin embeddings are pickles of 'string_to_param'; their .safetensors form holds 'emb_params')";

    public static EmbeddingSpec Parse(string argument)
    {
        ArgumentNullException.ThrowIfNull(argument);
        var (path, word) = ImportArgument.Split(argument);
        if (word is not null && !EmbeddingWords.IsValid(word))
            throw new InputException($"{Option} {argument}: '{word}' is not a word to type in a prompt; expected {EmbeddingWords.Rule}");
        var file = ImportArgument.ResolveFile(Option, path, DiffusersFileName, PickleWhat);
        return new EmbeddingSpec(file, word);
    }

    public override string ToString() => Word is null ? Path : $"{Path}:{Word}";
}
