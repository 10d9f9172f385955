using ContinualDiffusion.Text;

namespace ContinualDiffusion.Tests.Text;

public class ClipTextNormalizerTests
{
    private static string N(string s) => ClipTextNormalizer.Instance.Normalize(s);

    [Fact]
    public void Whitespace_is_collapsed_and_stripped() =>
        Assert.Equal("extra whitespace and newlines", N("   extra    whitespace\tand\nnewlines   "));

    [Fact]
    public void Words_are_lower_cased() => Assert.Equal("a painting, of two cats", N("A Painting, of TWO cats"));

    [Fact]
    public void Control_and_format_characters_are_removed() =>
        Assert.Equal("ab c", N("a\u0000b\u200D\u0007 \uFFFDc"));

    [Fact]
    public void Non_breaking_and_other_space_separators_become_spaces() =>
        Assert.Equal("a b c", N("a\u00A0b\u3000c"));

    [Fact]
    public void Cjk_ideographs_become_separate_words() => Assert.Equal("a 猫 b", N("a猫b"));

    [Fact]
    public void Text_is_nfc_composed() => Assert.Equal("caf\u00E9", N("cafe\u0301"));

    [Fact]
    public void Capital_i_with_dot_lowers_as_in_python() => Assert.Equal("i\u0307stanbul", N("\u0130stanbul"));
}

public class ClipPreTokenizerTests
{
    private static string[] Split(string s) => ClipPreTokenizer.Split(s).Select(p => s.Substring(p.Offset, p.Length)).ToArray();

    [Fact]
    public void Contractions_are_split_off() =>
        Assert.Equal(new[] { "it", "'s", "a", "dog", "'s", "life", ";", "isn", "'t" }, Split("it's a dog's life; isn't"));

    [Fact]
    public void Digits_are_one_per_piece() => Assert.Equal(new[] { "8", ".", "5", "%" }, Split("8.5%"));

    [Fact]
    public void Punctuation_runs_stay_together() => Assert.Equal(new[] { "(", "approx", ".)", "!!" }, Split("(approx.) !!"));

    [Fact]
    public void Special_words_are_kept_whole_only_at_a_piece_start()
    {
        Assert.Equal(new[] { "a", "<|endoftext|>", "b" }, Split("a <|endoftext|>b"));
        Assert.Equal(new[] { "!<|", "endoftext", "|>" }, Split("!<|endoftext|>"));
    }

    [Fact]
    public void Letters_outside_the_basic_plane_are_letters() =>
        Assert.Equal(new[] { "a\U0001D400b" }, Split("a\U0001D400b"));
}
