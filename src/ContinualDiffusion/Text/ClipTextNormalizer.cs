using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace ContinualDiffusion.Text;

/// The text clean-up transformers' slow CLIPTokenizer applies when ftfy is not installed (the setup the
/// reference fixture was produced with): `" ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text))`.
/// That is, in order:
///   1. drop NUL, U+FFFD and control/format characters (Unicode category C*, except \t \n \r);
///      turn \t \n \r and space separators (Zs) into a plain space;
///   2. put spaces around CJK ideographs (so each becomes its own word);
///   3. NFC-normalise;
///   4. split on whitespace, lower-case each word (Python `str.lower`), join with single spaces
///      (which also strips leading/trailing whitespace and collapses runs of it).
public sealed class ClipTextNormalizer : Normalizer
{
    public static ClipTextNormalizer Instance { get; } = new();

    public override string Normalize(string original) => Normalize(original.AsSpan());

    public override string Normalize(ReadOnlySpan<char> original)
    {
        string cleaned = CleanText(original);
        string spacedCjk = SpaceOutCjk(cleaned);
        string composed = spacedCjk.Normalize(NormalizationForm.FormC);
        return LowerCaseWords(composed);
    }

    /// BasicTokenizer._clean_text. Works on code points (Python iterates code points); a lone surrogate
    /// decodes to U+FFFD here and is dropped, as Python drops it as category Cs.
    private static string CleanText(ReadOnlySpan<char> text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (Rune r in text.EnumerateRunes())
        {
            if (r.Value == 0 || r.Value == 0xFFFD || IsControl(r)) continue;
            if (IsWhitespace(r)) sb.Append(' ');
            else sb.Append(r.ToString());
        }
        return sb.ToString();
    }

    /// BasicTokenizer's _is_whitespace: the four ASCII blanks or a space separator (Zs).
    private static bool IsWhitespace(Rune r) =>
        r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r) == UnicodeCategory.SpaceSeparator;

    /// BasicTokenizer's _is_control: any category starting with "C" except \t \n \r (those count as whitespace).
    private static bool IsControl(Rune r)
    {
        if (r.Value is '\t' or '\n' or '\r') return false;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;
    }

    /// BasicTokenizer._tokenize_chinese_chars.
    private static string SpaceOutCjk(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (Rune r in text.EnumerateRunes())
        {
            if (IsCjk(r.Value)) sb.Append(' ').Append(r.ToString()).Append(' ');
            else sb.Append(r.ToString());
        }
        return sb.ToString();
    }

    /// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks (not Hiragana/Katakana/Hangul).
    private static bool IsCjk(int cp) =>
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF)
        || (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF)
        || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);

    private static string LowerCaseWords(string text)
    {
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return string.Join(' ', words.Select(PythonLower));
    }

    /// Python's `str.lower` uses the full case mapping, where U+0130 (capital I with dot above) becomes
    /// "i" + U+0307; .NET's invariant lower-casing is the simple 1:1 mapping. That is the only
    /// unconditional multi-character lower-case mapping in Unicode, so it is patched here. (Python's
    /// context-dependent final-sigma rule is not reproduced: a word-final capital sigma lowers to σ, not ς.)
    internal static string PythonLower(string word) =>
        word.Replace("\u0130", "i\u0307", StringComparison.Ordinal).ToLowerInvariant();
}
