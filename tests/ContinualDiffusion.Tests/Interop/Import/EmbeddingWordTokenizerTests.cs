using ContinualDiffusion.Tests.Text;
using ContinualDiffusion.Text;

namespace ContinualDiffusion.Tests.Interop.Import;

/// Embedding words in the tokenizer (no tensor): ids after the vocabulary, whole-word and case-insensitive matching of
/// plain words, verbatim matching of bracketed ones, and diffusers' multi-vector rule (WORD → WORD WORD_1 … WORD_{n-1}).
public class EmbeddingWordTokenizerTests
{
    private static ClipTokenizer Fresh() => ClipTokenizer.FromFolder(ClipTokenizerTests.TokenizerDir);

    private static List<long> Ids(ClipTokenizer t, string prompt) => [.. t.EncodeUnpadded(prompt)];

    [Fact]
    public void A_plain_word_is_one_token_as_a_whole_word_in_any_case()
    {
        var t = Fresh();
        var plain = Fresh();
        Assert.Equal([49408L], t.AddEmbeddingWord("v1", 1));
        Assert.Equal(49409, t.VocabularySize);
        Assert.Equal([.. plain.EncodeUnpadded("a photo of"), 49408L], Ids(t, "a photo of v1"));
        Assert.Equal([.. plain.EncodeUnpadded("a photo of"), 49408L, .. plain.EncodeUnpadded(", sharp")], Ids(t, "a photo of V1, sharp"));
        Assert.Equal(Ids(plain, "a photo of v10"), Ids(t, "a photo of v10"));   // not inside a longer word
        Assert.Equal(Ids(plain, "a photo of my_v1"), Ids(t, "a photo of my_v1"));
    }

    [Fact]
    public void A_plain_word_becomes_the_same_ids_as_the_run_token_it_was_exported_from()
    {
        var run = Fresh();
        run.AddConceptToken("<v1>");
        var imported = Fresh();
        imported.AddEmbeddingWord("v1", 1);
        Assert.Equal(run.Encode("a photo of <v1>").InputIds, imported.Encode("a photo of v1").InputIds);
    }

    [Fact]
    public void A_multi_vector_word_expands_to_all_its_tokens_as_diffusers_rewrites_the_prompt()
    {
        var t = Fresh();
        var ids = t.AddEmbeddingWord("trio", 3);
        Assert.Equal([49408L, 49409L, 49410L], ids);
        var a = Ids(t, "a").Single();
        var photo = Ids(t, "photo").Single();
        Assert.Equal([a, 49408L, 49409L, 49410L, photo], Ids(t, "a trio photo"));
        // diffusers' _maybe_convert_prompt: "trio" → "trio trio_1 trio_2", each of which is one added token; typed
        // alone, trio_1 and trio_2 are their one vector each.
        Assert.Equal([a, 49409L, 49410L], Ids(t, "a trio_1 trio_2"));
        Assert.Equal([a, 49409L], Ids(t, "a trio_1"));
        Assert.Equal(["a</w>", "trio", "trio_1", "trio_2"], t.BpeTokens("a trio"));
    }

    [Fact]
    public void A_bracketed_word_is_cut_out_verbatim_and_expands_too()
    {
        var t = Fresh();
        var ids = t.AddEmbeddingWord("<cat-toy>", 2);
        Assert.Equal([.. Ids(Fresh(), "a"), ids[0], ids[1], .. Ids(Fresh(), "backpack")], Ids(t, "a <cat-toy>backpack"));
        Assert.Equal([ids[1]], Ids(t, "<cat-toy>_1"));
        Assert.Empty(t.UnknownConceptTokens("a <cat-toy>"));
    }

    [Fact]
    public void Words_after_a_runs_concepts_take_the_next_ids_and_clashes_are_refused()
    {
        var t = Fresh();
        t.AddConceptToken("<v1>");
        Assert.Equal([49409L, 49410L], t.AddEmbeddingWord("style", 2));
        Assert.Equal(49411, t.VocabularySize);
        Assert.Equal("style_1", t.EmbeddingWordConflict("style_1", 1));
        Assert.Equal("STYLE", t.EmbeddingWordConflict("STYLE", 1));
        Assert.Equal("<v1>", t.EmbeddingWordConflict("<v1>", 1));
        Assert.Null(t.EmbeddingWordConflict("v1", 1));
        Assert.Throws<ArgumentException>(() => t.AddEmbeddingWord("style_1", 1));
        Assert.Throws<InvalidOperationException>(() => t.AddConceptToken("<v2>")); // concept ids stay BaseVocabularySize + index
    }
}
