using System.Text.Json;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Text;

public class ClipTokenizerTests
{
    private static readonly Lazy<ClipTokenizer> Shared = new(() => ClipTokenizer.FromFolder(TokenizerDir));
    internal static string TokenizerDir => Path.Combine(Fixture.SdTiny, "tokenizer");
    internal static ClipTokenizer Tokenizer => Shared.Value;

    internal static string[] Prompts() =>
        Fixture.ReferenceJson.GetProperty("prompts").EnumerateArray().Select(p => p.GetString()!).ToArray();

    [Fact]
    public void Reads_special_tokens_and_sizes_from_the_sd1_folder()
    {
        var t = Tokenizer;
        Assert.Equal(49406, t.BosId);
        Assert.Equal(49407, t.EosId);
        Assert.Equal(49407, t.PadId);
        Assert.Equal("<|endoftext|>", t.PadToken);
        Assert.Equal(77, t.ModelMaxLength);
        Assert.Equal(49408, t.BaseVocabularySize);
    }

    [Fact]
    public void A_photo_of_a_cat_encodes_to_the_known_ids()
    {
        var encoded = Tokenizer.Encode("a photo of a cat");
        Assert.Equal(new long[] { 49406, 320, 1125, 539, 320, 2368, 49407 }, encoded.InputIds[..7]);
        Assert.All(encoded.InputIds[7..], id => Assert.Equal(49407, id));
        Assert.Equal(7, encoded.UnpaddedLength);
        Assert.False(encoded.Truncated);
    }

    [Fact]
    public void Input_ids_of_all_fixture_prompts_equal_transformers()
    {
        using var scope = torch.NewDisposeScope();
        var prompts = Prompts();
        var expected = Fixture.Ref("tokenizer.input_ids");
        var actual = Tokenizer.EncodeBatch(prompts);
        Assert.Equal(ScalarType.Int64, actual.dtype);
        Assert.Equal(new long[] { prompts.Length, 77 }, actual.shape);
        for (int i = 0; i < prompts.Length; i++)
            Assert.True(expected[i].eq(actual[i]).all().item<bool>(),
                $"prompt {i} '{prompts[i]}': expected [{string.Join(",", expected[i].data<long>())}] got [{string.Join(",", actual[i].data<long>())}]");
    }

    [Fact]
    public void Attention_masks_of_all_fixture_prompts_equal_transformers()
    {
        using var scope = torch.NewDisposeScope();
        var prompts = Prompts();
        var expected = Fixture.Ref("tokenizer.attention_mask");
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(expected[i].data<long>().ToArray(), Tokenizer.Encode(prompts[i]).AttentionMask);
    }

    [Fact]
    public void Bpe_tokens_of_all_fixture_prompts_equal_transformers()
    {
        var prompts = Prompts();
        var expected = Fixture.ReferenceJson.GetProperty("tokenizer").GetProperty("bpe_tokens");
        for (int i = 0; i < prompts.Length; i++)
        {
            var want = expected[i].EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Equal(want, Tokenizer.BpeTokens(prompts[i]));
        }
    }

    [Fact]
    public void Unpadded_ids_of_all_fixture_prompts_equal_transformers()
    {
        var prompts = Prompts();
        var expected = Fixture.ReferenceJson.GetProperty("tokenizer").GetProperty("unpadded_input_ids");
        for (int i = 0; i < prompts.Length; i++)
        {
            var want = expected[i].EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var got = Tokenizer.EncodeUnpadded(prompts[i]);
            Assert.Equal(want, new[] { Tokenizer.BosId }.Concat(got).Append(Tokenizer.EosId).ToArray());
        }
    }

    [Fact]
    public void Long_prompt_is_truncated_to_bos_75_tokens_eos_and_reports_it()
    {
        var prompts = Prompts();
        var longPrompt = prompts.Single(p => p.StartsWith("a very long prompt", StringComparison.Ordinal));
        var full = Tokenizer.EncodeUnpadded(longPrompt);
        var encoded = Tokenizer.Encode(longPrompt);

        Assert.True(encoded.Truncated);
        Assert.Equal(full.Count - 75, encoded.DroppedTokenCount);
        Assert.Equal(77, encoded.UnpaddedLength);
        Assert.Equal(49406, encoded.InputIds[0]);
        Assert.Equal(full.Take(75), encoded.InputIds[1..76]);
        Assert.Equal(49407, encoded.InputIds[76]);
        Assert.All(encoded.AttentionMask, m => Assert.Equal(1, m));
    }

    [Fact]
    public void Prompt_of_exactly_75_tokens_is_not_truncated()
    {
        // "a" is one token: 75 of them fill the window exactly; one more is cut.
        var fits = Tokenizer.Encode(string.Join(' ', Enumerable.Repeat("a", 75)));
        Assert.False(fits.Truncated);
        Assert.Equal(77, fits.UnpaddedLength);
        var over = Tokenizer.Encode(string.Join(' ', Enumerable.Repeat("a", 76)));
        Assert.True(over.Truncated);
        Assert.Equal(1, over.DroppedTokenCount);
    }

    [Fact]
    public void Empty_prompt_is_bos_eos_then_padding()
    {
        var encoded = Tokenizer.Encode("");
        Assert.Equal(new long[] { 49406, 49407, 49407 }, encoded.InputIds[..3]);
        Assert.Equal(2, encoded.UnpaddedLength);
        Assert.Equal(new long[] { 1, 1, 0 }, encoded.AttentionMask[..3]);
    }

    [Fact]
    public void Special_words_in_the_prompt_map_to_their_ids()
    {
        Assert.Equal(new long[] { 320, 49407, 2368 }, Tokenizer.EncodeUnpadded("a<|endoftext|>cat"));
        // Upper-case variants are not added tokens but the lower-cased word is kept whole and mapped the same way.
        Assert.Equal(new long[] { 320, 49406, 2368 }, Tokenizer.EncodeUnpadded("a <|STARTOFTEXT|> cat"));
    }

    [Fact]
    public void Case_and_whitespace_do_not_change_the_ids()
    {
        var a = Tokenizer.EncodeUnpadded("A Photo OF a CAT");
        var b = Tokenizer.EncodeUnpadded("  a photo\t\tof\na   cat \r\n");
        Assert.Equal(new long[] { 320, 1125, 539, 320, 2368 }, a);
        Assert.Equal(a, b);
    }
}
