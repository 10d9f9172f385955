using System.Text;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// One learned concept for export: its cdiff token (`<v1>`), the word other tools know it by (`v1`: the stem of its
/// embedding file), and its embedding row [1, D] (owned by the adapter it came from, not by this record).
public sealed record ConceptEmbedding(int Task, string Token, Tensor Embedding)
{
    /// `--embedding-prefix` (EmbeddingPrefix), put before the stem: every run's tokens are `<v1>`, `<v2>`…, so
    /// files from two runs would collide in one embeddings folder.
    public string StemPrefix { get; init; } = "";

    /// The file stem and prompt word for tools that name an embedding by its file (A1111, Forge, ComfyUI): the prefix
    /// and the token without its angle brackets, keeping only letters, digits, `_` and `-` (others become `_`), so it
    /// is a file name on every system and one word users can type: `<v1>` → `v1` (`faces-v1` with the prefix `faces-`).
    public string Stem => StemPrefix + StemOf(Token);

    public static string StemOf(string token)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(token);
        var inner = token.Length > 2 && token[0] == '<' && token[^1] == '>' ? token[1..^1] : token;
        var sb = new StringBuilder(inner.Length);
        foreach (char c in inner) sb.Append(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_');
        var stem = sb.ToString().Trim('_');
        return stem.Length == 0 ? "concept" : stem;
    }
}
