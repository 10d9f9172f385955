using System.Text.RegularExpressions;

namespace ContinualDiffusion.Text;

/// Conventions for concept tokens: the placeholder words (<v1>, <v2>, ...) that stand for a learned concept.
public static partial class ConceptTokens
{
    /// The shape a concept token must have to be added: one '<'...'>' bracketed word without whitespace or
    /// nested brackets. Brackets keep a concept token from also being a substring of ordinary words
    /// (added tokens are cut out of the raw prompt wherever they occur).
    [GeneratedRegex(@"^<[^<>\s]+>$", RegexOptions.CultureInvariant)]
    private static partial Regex AddablePattern();

    /// What looks like a concept reference in a prompt: <vN>, matched case-insensitively so that a
    /// mistyped <V1> is reported instead of being silently tokenized as ordinary text.
    [GeneratedRegex(@"<v\d+>", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex ReferencePattern();

    /// The conventional name of the n-th concept (1-based): <v1>, <v2>, ...
    public static string Name(int index) =>
        index >= 1 ? $"<v{index}>" : throw new ArgumentOutOfRangeException(nameof(index), index, "concept indices start at 1");

    public static bool IsAddable(string token) => AddablePattern().IsMatch(token);

    /// Every <vN>-like token in the prompt, in order of first appearance, without duplicates.
    public static IReadOnlyList<string> FindReferences(string prompt) =>
        ReferencePattern().Matches(prompt).Select(m => m.Value).Distinct(StringComparer.Ordinal).ToList();
}
