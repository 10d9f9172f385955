using System.Text.RegularExpressions;

namespace ContinualDiffusion.Text;

/// A piece of a prompt: either plain text (to be normalised and BPE-encoded) or an added token with its id.
public readonly record struct PromptPiece(string Text, long? AddedTokenId);

/// Splits a raw prompt on "added tokens" (CLIP's <|startoftext|>/<|endoftext|> and concept tokens such as
/// <v1>) before any normalisation, as transformers' slow tokenizer does with its added-tokens trie: matching
/// is exact and case-sensitive, the longest token wins where two could start at the same place, and the text
/// between tokens is tokenized on its own.
///
/// `words` (plain embedding words, see EmbeddingWords) are matched as whole words only (no letter, digit or `_` right
/// before or after) and ignoring case; a verbatim token that starts at the same place wins.
public sealed class AddedTokenSplitter
{
    private const string WordGroup = "word";
    private readonly Dictionary<string, long> _ids;
    private readonly Dictionary<string, long> _words;
    private readonly Regex? _pattern;

    public AddedTokenSplitter(IReadOnlyDictionary<string, long> tokens, IReadOnlyDictionary<string, long>? words = null)
    {
        _ids = new Dictionary<string, long>(tokens, StringComparer.Ordinal);
        _words = new Dictionary<string, long>(StringComparer.OrdinalIgnoreCase);
        if (words is not null) foreach (var (w, id) in words) _words[w] = id;
        _pattern = _ids.Count == 0 && _words.Count == 0 ? null : BuildPattern(_ids.Keys, _words.Keys);
    }

    public IReadOnlyDictionary<string, long> Tokens => _ids;

    public IEnumerable<PromptPiece> Split(string prompt)
    {
        if (_pattern is null)
        {
            if (prompt.Length > 0) yield return new PromptPiece(prompt, null);
            yield break;
        }
        int at = 0;
        foreach (Match m in _pattern.Matches(prompt))
        {
            if (m.Index > at) yield return new PromptPiece(prompt[at..m.Index], null);
            yield return new PromptPiece(m.Value, m.Groups[WordGroup].Success ? _words[m.Value] : _ids[m.Value]);
            at = m.Index + m.Length;
        }
        if (at < prompt.Length) yield return new PromptPiece(prompt[at..], null);
    }

    /// Longest alternatives first so that, of two tokens starting at the same position, the longer matches.
    private static Regex BuildPattern(IEnumerable<string> tokens, IEnumerable<string> words)
    {
        static IEnumerable<string> Longest(IEnumerable<string> xs) =>
            xs.OrderByDescending(t => t.Length).ThenBy(t => t, StringComparer.Ordinal).Select(Regex.Escape);
        var alternatives = Longest(tokens).ToList();
        var plain = Longest(words).ToList();
        if (plain.Count > 0) alternatives.Add($@"(?<{WordGroup}>(?<![\w])(?i:{string.Join("|", plain)})(?![\w]))");
        return new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
    }
}
