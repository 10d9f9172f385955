using System.Text.RegularExpressions;

namespace ContinualDiffusion.Text;

/// A piece of a prompt: either plain text (to be normalised and BPE-encoded) or an added token with its id.
public readonly record struct PromptPiece(string Text, long? AddedTokenId);

/// Splits a raw prompt on "added tokens" (CLIP's <|startoftext|>/<|endoftext|> and concept tokens such as
/// <v1>) before any normalisation, as transformers' slow tokenizer does with its added-tokens trie: matching
/// is exact and case-sensitive, the longest token wins where two could start at the same place, and the text
/// between tokens is tokenized on its own.
public sealed class AddedTokenSplitter
{
    private readonly Dictionary<string, long> _ids;
    private readonly Regex? _pattern;

    public AddedTokenSplitter(IReadOnlyDictionary<string, long> tokens)
    {
        _ids = new Dictionary<string, long>(tokens, StringComparer.Ordinal);
        _pattern = _ids.Count == 0 ? null : BuildPattern(_ids.Keys);
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
            yield return new PromptPiece(m.Value, _ids[m.Value]);
            at = m.Index + m.Length;
        }
        if (at < prompt.Length) yield return new PromptPiece(prompt[at..], null);
    }

    /// Longest alternatives first so that, of two tokens starting at the same position, the longer matches.
    private static Regex BuildPattern(IEnumerable<string> tokens)
    {
        var alternatives = tokens.OrderByDescending(t => t.Length).ThenBy(t => t, StringComparer.Ordinal).Select(Regex.Escape);
        return new Regex(string.Join("|", alternatives), RegexOptions.CultureInvariant);
    }
}
