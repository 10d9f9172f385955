using ContinualDiffusion.Text;

namespace ContinualDiffusion.Tests.Text;

public class ConceptTokenTests
{
    private static ClipTokenizer FreshTokenizer() => ClipTokenizer.FromFolder(ClipTokenizerTests.TokenizerDir);

    [Fact]
    public void Concept_tokens_get_ids_after_the_vocabulary_in_order_of_adding()
    {
        var t = FreshTokenizer();
        Assert.Equal(49408, t.AddConceptToken("<v1>"));
        Assert.Equal(49409, t.AddConceptToken("<v3>"));
        Assert.Equal(49410, t.AddConceptToken("<v2>"));
        Assert.Equal(49411, t.VocabularySize);
        Assert.Equal(new[] { "<v1>", "<v3>", "<v2>" }, t.ConceptTokens);
        Assert.True(t.TryGetConceptTokenId("<v3>", out long id));
        Assert.Equal(49409, id);
        Assert.False(t.TryGetConceptTokenId("<|endoftext|>", out _));
    }

    [Fact]
    public void Concept_tokens_stay_single_tokens_wherever_they_appear()
    {
        var t = FreshTokenizer();
        long v1 = t.AddConceptToken("<v1>"), v2 = t.AddConceptToken("<v2>"), v3 = t.AddConceptToken("<v3>");
        var and = t.EncodeUnpadded("and").Single();
        Assert.Equal(new[] { v1, and }.Concat(new[] { v3 }).Concat(t.EncodeUnpadded("at the beach")),
            t.EncodeUnpadded("<v1> and <v3> at the beach"));
        Assert.Equal(new long[] { 320, 1125, 539, v2, 269 }, t.EncodeUnpadded("a photo of <v2>."));
        Assert.Equal(new[] { v1, v2 }, t.EncodeUnpadded("<v1><v2>"));
        Assert.Equal(new[] { t.EncodeUnpadded("x").Single(), v1, t.EncodeUnpadded("y").Single() }, t.EncodeUnpadded("x<v1>y"));
    }

    [Fact]
    public void Encode_puts_concept_ids_inside_the_padded_window()
    {
        var t = FreshTokenizer();
        long v1 = t.AddConceptToken("<v1>");
        var encoded = t.Encode("a photo of <v1>");
        Assert.Equal(new long[] { 49406, 320, 1125, 539, v1, 49407, 49407 }, encoded.InputIds[..7]);
        Assert.Equal(6, encoded.UnpaddedLength);
    }

    [Fact]
    public void Concept_tokens_match_case_sensitively_and_only_whole()
    {
        var t = FreshTokenizer();
        long v1 = t.AddConceptToken("<v1>");
        Assert.DoesNotContain(v1, t.EncodeUnpadded("<V1>"));
        Assert.DoesNotContain(v1, t.EncodeUnpadded("<v12>"));
        Assert.Equal(t.EncodeUnpadded("<v12>"), FreshTokenizer().EncodeUnpadded("<v12>"));
    }

    [Fact]
    public void Adding_concepts_leaves_ordinary_prompts_unchanged()
    {
        var t = FreshTokenizer();
        t.AddConceptToken("<v1>");
        foreach (var prompt in ClipTokenizerTests.Prompts())
            Assert.Equal(ClipTokenizerTests.Tokenizer.Encode(prompt).InputIds, t.Encode(prompt).InputIds);
    }

    [Fact]
    public void Unknown_concept_tokens_are_reported_once_in_order()
    {
        var t = FreshTokenizer();
        t.AddConceptToken("<v1>");
        Assert.Empty(t.UnknownConceptTokens("a photo of <v1>"));
        Assert.Equal(new[] { "<v7>", "<V1>", "<v12>" }, t.UnknownConceptTokens("<v7> and <v1> and <V1> and <v7>, <v12>"));
    }

    [Fact]
    public void Unknown_concept_error_lists_the_known_ones()
    {
        var t = FreshTokenizer();
        t.AddConceptToken("<v1>");
        t.AddConceptToken("<v2>");
        t.ThrowIfUnknownConceptTokens("<v1> next to <v2>");
        var e = Assert.Throws<InputException>(() => t.ThrowIfUnknownConceptTokens("<v3> on a table"));
        Assert.Contains("<v3>", e.Message);
        Assert.Contains("<v1>, <v2>", e.Message);
    }

    [Theory]
    [InlineData("v1")]
    [InlineData("<v 1>")]
    [InlineData("<>")]
    [InlineData("<<v1>>")]
    [InlineData("")]
    public void Malformed_concept_tokens_are_rejected(string token)
    {
        Assert.Throws<ArgumentException>(() => FreshTokenizer().AddConceptToken(token));
    }

    [Fact]
    public void Existing_tokens_cannot_be_added_again()
    {
        var t = FreshTokenizer();
        t.AddConceptToken("<v1>");
        Assert.Throws<ArgumentException>(() => t.AddConceptToken("<v1>"));
        Assert.Throws<ArgumentException>(() => t.AddConceptToken("<|endoftext|>"));
        Assert.Equal("<v1>", Assert.Single(t.ConceptTokens));
    }

    [Fact]
    public void Concept_names_follow_the_v_n_convention()
    {
        Assert.Equal("<v1>", ConceptTokens.Name(1));
        Assert.Equal("<v12>", ConceptTokens.Name(12));
        Assert.Throws<ArgumentOutOfRangeException>(() => ConceptTokens.Name(0));
    }
}
