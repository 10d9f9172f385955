using ContinualDiffusion.Text;

namespace ContinualDiffusion.Tests.Text;

public class ClipTokenizerFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-tok-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// A copy of the fixture's tokenizer folder, optionally without some files.
    private string CopyTokenizer(params string[] skip)
    {
        var dir = Path.Combine(_dir, "tokenizer");
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(ClipTokenizerTests.TokenizerDir))
            if (!skip.Contains(Path.GetFileName(file))) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        return dir;
    }

    private static TokenizerFileException LoadFails(string dir) =>
        Assert.Throws<TokenizerFileException>(() => ClipTokenizer.FromFolder(dir));

    [Fact]
    public void Missing_vocab_file_is_named()
    {
        var e = LoadFails(CopyTokenizer("vocab.json"));
        Assert.Contains("vocab.json", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Missing_merges_file_is_named()
    {
        Assert.Contains("merges.txt", LoadFails(CopyTokenizer("merges.txt")).Message);
    }

    [Fact]
    public void Missing_folder_is_named()
    {
        Assert.Contains("nowhere", LoadFails(Path.Combine(_dir, "nowhere")).Message);
    }

    [Fact]
    public void Missing_both_special_token_files_is_an_error()
    {
        var e = LoadFails(CopyTokenizer("tokenizer_config.json", "special_tokens_map.json"));
        Assert.Contains("tokenizer_config.json", e.Message);
    }

    [Fact]
    public void One_special_token_file_is_enough()
    {
        var t = ClipTokenizer.FromFolder(CopyTokenizer("special_tokens_map.json"));
        Assert.Equal(49407, t.PadId);
    }

    [Fact]
    public void Merge_line_with_three_symbols_is_reported_with_its_line_number()
    {
        var dir = CopyTokenizer();
        var lines = File.ReadAllLines(Path.Combine(dir, "merges.txt"));
        lines[2] = "t h e";
        File.WriteAllLines(Path.Combine(dir, "merges.txt"), lines);
        var e = LoadFails(dir);
        Assert.Contains("merges.txt", e.Message);
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void Merge_of_symbols_missing_from_the_vocabulary_is_reported()
    {
        var dir = CopyTokenizer();
        File.WriteAllLines(Path.Combine(dir, "merges.txt"), new[] { "#version: 0.2", "i n", "qq zz" });
        var e = LoadFails(dir);
        Assert.Contains("merges.txt", e.Message);
        Assert.Contains("qq", e.Message);
    }

    [Fact]
    public void Merges_file_with_only_a_header_is_rejected()
    {
        var dir = CopyTokenizer();
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
        Assert.Contains("merges.txt", LoadFails(dir).Message);
    }

    [Fact]
    public void Vocab_that_is_not_json_is_reported()
    {
        var dir = CopyTokenizer();
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 1, ");
        Assert.Contains("vocab.json", LoadFails(dir).Message);
    }

    [Fact]
    public void Vocab_with_a_repeated_id_is_reported()
    {
        var dir = CopyTokenizer();
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 1, \"b\": 1}");
        var e = LoadFails(dir);
        Assert.Contains("vocab.json", e.Message);
        Assert.Contains("id 1", e.Message);
    }

    [Fact]
    public void Pad_token_missing_from_the_vocabulary_is_reported()
    {
        var dir = CopyTokenizer("special_tokens_map.json");
        var config = Path.Combine(dir, "tokenizer_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"pad_token\": \"<|endoftext|>\"", "\"pad_token\": \"<pad>\""));
        var e = LoadFails(dir);
        Assert.Contains("pad_token", e.Message);
        Assert.Contains("<pad>", e.Message);
    }

    [Fact]
    public void Non_clip_tokenizer_class_is_rejected()
    {
        var dir = CopyTokenizer();
        var config = Path.Combine(dir, "tokenizer_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"CLIPTokenizer\"", "\"T5Tokenizer\""));
        Assert.Contains("tokenizer_class", LoadFails(dir).Message);
    }

    /// SD 2.x folders name "!" (id 0) as the pad token.
    private string Sd2StyleTokenizer()
    {
        var dir = CopyTokenizer();
        foreach (var name in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(dir, name);
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"pad_token\": \"<|endoftext|>\"", "\"pad_token\": \"!\""));
        }
        return dir;
    }

    [Fact]
    public void Sd2_style_folder_pads_with_exclamation_mark_id_0()
    {
        var t = ClipTokenizer.FromFolder(Sd2StyleTokenizer());
        Assert.Equal(0, t.PadId);
        var encoded = t.Encode("a photo of a cat");
        Assert.Equal(new long[] { 49406, 320, 1125, 539, 320, 2368, 49407, 0, 0 }, encoded.InputIds[..9]);
        Assert.Equal(7, encoded.UnpaddedLength);
        Assert.Equal(0, encoded.AttentionMask[7]);
    }

    [Fact]
    public void Sd2_pad_token_is_an_added_token_as_in_transformers_4_40()
    {
        // transformers 4.40 registers every special token in the added-tokens trie, so "!!" is cut into two "!"
        // with the SD 2.x folder while SD 1.x merges it into the single token "!!</w>" (748).
        Assert.Equal(new long[] { 0, 0 }, ClipTokenizer.FromFolder(Sd2StyleTokenizer()).EncodeUnpadded("!!"));
        Assert.Equal(new long[] { 748 }, ClipTokenizerTests.Tokenizer.EncodeUnpadded("!!"));
    }

    [Fact]
    public void Model_max_length_comes_from_the_config()
    {
        var dir = CopyTokenizer();
        var config = Path.Combine(dir, "tokenizer_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_max_length\": 77", "\"model_max_length\": 10"));
        var encoded = ClipTokenizer.FromFolder(dir).Encode("one two three four five six seven eight nine");
        Assert.Equal(10, encoded.InputIds.Length);
        Assert.True(encoded.Truncated);
        Assert.Equal(1, encoded.DroppedTokenCount);
    }
}
