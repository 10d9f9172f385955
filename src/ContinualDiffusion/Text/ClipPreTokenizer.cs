using System.Text;
using Microsoft.ML.Tokenizers;

namespace ContinualDiffusion.Text;

/// CLIP's word splitter, equivalent to `regex.findall` with the pattern
///   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+   (IGNORECASE)
/// Written as a scanner over code points rather than a .NET Regex because .NET's regex classes work on UTF-16
/// units: a letter outside the BMP (e.g. U+1D400) is two surrogates of category Cs to .NET, so `[\p{L}]+`
/// would not match it and the word would split differently from Python. At each position the alternatives
/// are tried in the pattern's order and the first that matches wins; unmatched characters (whitespace) are skipped.
public sealed class ClipPreTokenizer : PreTokenizer
{
    public static ClipPreTokenizer Instance { get; } = new();

    private static readonly string[] SpecialWords = ["<|startoftext|>", "<|endoftext|>"];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    /// The (offset, length) pieces in UTF-16 units, in order.
    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            int length = MatchAt(text, i);
            if (length > 0)
            {
                pieces.Add((i, length));
                i += length;
            }
            else
            {
                i += RuneLength(text, i);
            }
        }
        return pieces;
    }

    /// Length of the match starting at `i`, or 0 when no alternative matches (whitespace).
    private static int MatchAt(ReadOnlySpan<char> text, int i)
    {
        foreach (var literal in SpecialWords)
            if (StartsWithIgnoreCase(text, i, literal)) return literal.Length;
        foreach (var literal in Contractions)
            if (StartsWithIgnoreCase(text, i, literal)) return literal.Length;

        Rune first = RuneAt(text, i);
        if (Rune.IsLetter(first)) return RunLength(text, i, Rune.IsLetter);
        if (Rune.IsNumber(first)) return first.Utf16SequenceLength; // [\p{N}]: one digit per piece
        if (!Rune.IsWhiteSpace(first)) return RunLength(text, i, IsOther);
        return 0;
    }

    private static bool IsOther(Rune r) => !Rune.IsWhiteSpace(r) && !Rune.IsLetter(r) && !Rune.IsNumber(r);

    private static int RunLength(ReadOnlySpan<char> text, int start, Func<Rune, bool> inClass)
    {
        int j = start;
        while (j < text.Length)
        {
            Rune r = RuneAt(text, j);
            if (!inClass(r)) break;
            j += r.Utf16SequenceLength;
        }
        return j - start;
    }

    private static bool StartsWithIgnoreCase(ReadOnlySpan<char> text, int i, string literal) =>
        text.Length - i >= literal.Length && text.Slice(i, literal.Length).Equals(literal, StringComparison.OrdinalIgnoreCase);

    private static Rune RuneAt(ReadOnlySpan<char> text, int i) =>
        Rune.DecodeFromUtf16(text[i..], out Rune r, out _) == System.Buffers.OperationStatus.Done ? r : Rune.ReplacementChar;

    private static int RuneLength(ReadOnlySpan<char> text, int i) =>
        Rune.DecodeFromUtf16(text[i..], out _, out int consumed) == System.Buffers.OperationStatus.Done ? consumed : 1;
}
