using System.Text.RegularExpressions;

namespace ContinualDiffusion.Text;

/// The words that stand for a textual-inversion embedding loaded from another tool's file (`sample --embedding`).
///
/// Two kinds of word:
/// - a bracketed token such as `<cat-toy>` (the form diffusers' concept library uses, and cdiff's own `<v1>`): cut out
///   of the prompt verbatim and case-sensitively, like concept tokens;
/// - a plain word such as `v1` or `EasyNegative` (A1111 names an embedding by its file stem): matched as a whole word
///   (not inside `v10` or `my_v1`), ignoring case as A1111 does (it matches on CLIP's lower-cased tokens).
///
/// An embedding of n vectors [n, D] becomes n tokens `WORD`, `WORD_1`, …, `WORD_{n-1}`, and `WORD` in a prompt stands
/// for all n of them in that order: diffusers `loaders/textual_inversion.py` (`_extend_tokens_and_embeddings` names
/// them so; `_maybe_convert_prompt` rewrites `WORD` to `WORD WORD_1 … WORD_{n-1}` before tokenizing). A single
/// `WORD_i` typed alone stays that one vector, as in diffusers.
public static partial class EmbeddingWords
{
    [GeneratedRegex(@"^[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?$", RegexOptions.CultureInvariant)]
    private static partial Regex PlainPattern();

    /// A bracketed token (`<...>`, as ConceptTokens.IsAddable) or a plain ASCII word: letters, digits, `_`, and `-` or
    /// `.` inside (`bad-hands-5`, `v1.5`).
    public static bool IsValid(string word) =>
        !string.IsNullOrEmpty(word) && (IsBracketed(word) || PlainPattern().IsMatch(word));

    public static bool IsBracketed(string word) => ConceptTokens.IsAddable(word);

    /// `WORD`, `WORD_1`, …, `WORD_{n-1}` (diffusers' names for the vectors of a multi-vector embedding).
    public static IReadOnlyList<string> VectorNames(string word, int vectors)
    {
        ArgumentException.ThrowIfNullOrEmpty(word);
        ArgumentOutOfRangeException.ThrowIfLessThan(vectors, 1);
        var names = new List<string>(vectors) { word };
        for (int i = 1; i < vectors; i++) names.Add($"{word}_{i}");
        return names;
    }

    public const string Rule = "a word of letters, digits, _ (and - or . inside), or a <bracketed> token";
}
