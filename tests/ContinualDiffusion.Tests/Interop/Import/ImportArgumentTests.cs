using ContinualDiffusion.Interop.Import;

namespace ContinualDiffusion.Tests.Interop.Import;

/// `--lora FILE[:SCALE]` and `--embedding FILE[:WORD]` parsing and the file checks made before the model loads (no
/// tensor is read: the files only need to exist).
public class ImportArgumentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-import-args-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Touch(string name)
    {
        var path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "not read here");
        return path;
    }

    [Fact]
    public void Scale_follows_the_last_colon_and_defaults_to_one()
    {
        var f = Touch("style.safetensors");
        Assert.Equal(new LoraSpec(f, 1), LoraSpec.Parse(f));
        Assert.Equal(new LoraSpec(f, 0.5), LoraSpec.Parse(f + ":0.5"));
        Assert.Equal(new LoraSpec(f, -1.25), LoraSpec.Parse(f + ":-1.25"));
        Assert.Equal(new LoraSpec(f, 2), LoraSpec.Parse(f + ":2"));
    }

    [Fact]
    public void A_file_whose_name_holds_a_colon_is_taken_whole()
    {
        var f = Touch("odd:name.safetensors");
        Assert.Equal(new LoraSpec(f, 1), LoraSpec.Parse(f));
        Assert.Equal(new LoraSpec(f, 0.7), LoraSpec.Parse(f + ":0.7"));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("")]
    [InlineData("0,5")]
    public void A_bad_scale_is_one_line_naming_it(string scale)
    {
        var f = Touch("style.safetensors");
        var e = Assert.Throws<InputException>(() => LoraSpec.Parse(f + ":" + scale));
        Assert.Contains($"'{scale}' is not a number", e.Message);
        Assert.Contains("FILE:SCALE", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_file_is_named()
    {
        var missing = Path.Combine(_dir, "nope.safetensors");
        Assert.Contains("no such file", Assert.Throws<InputException>(() => LoraSpec.Parse(missing + ":0.5")).Message);
        Assert.Contains("no such file", Assert.Throws<InputException>(() => EmbeddingSpec.Parse(missing)).Message);
    }

    [Theory]
    [InlineData("style.pt")]
    [InlineData("style.ckpt")]
    [InlineData("style.bin")]
    public void A_pickle_lora_is_refused_with_the_reason(string name)
    {
        var e = Assert.Throws<InputException>(() => LoraSpec.Parse(Touch(name) + ":0.8"));
        Assert.Contains("pickle", e.Message);
        Assert.Contains("arbitrary code", e.Message);
        Assert.Contains("the LoRA as .safetensors", e.Message);
    }

    [Fact]
    public void A_pickle_embedding_is_refused_naming_string_to_param()
    {
        var e = Assert.Throws<InputException>(() => EmbeddingSpec.Parse(Touch("bad-hands-5.pt")));
        Assert.Contains("arbitrary code", e.Message);
        Assert.Contains("string_to_param", e.Message);
        Assert.Contains("emb_params", e.Message);
    }

    [Fact]
    public void A_folder_means_its_diffusers_file()
    {
        var lora = Touch(Path.Combine("lora-dir", LoraSpec.DiffusersFileName));
        Assert.Equal(lora, LoraSpec.Parse(Path.GetDirectoryName(lora)! + ":0.5").Path);
        var embeds = Touch(Path.Combine("v1", EmbeddingSpec.DiffusersFileName));
        Assert.Equal(new EmbeddingSpec(embeds, null), EmbeddingSpec.Parse(Path.GetDirectoryName(embeds)!));
        Directory.CreateDirectory(Path.Combine(_dir, "empty"));
        Assert.Contains("a folder without", Assert.Throws<InputException>(() => LoraSpec.Parse(Path.Combine(_dir, "empty"))).Message);
    }

    [Fact]
    public void Embedding_word_follows_the_last_colon_and_must_be_typeable()
    {
        var f = Touch("v1.safetensors");
        Assert.Equal(new EmbeddingSpec(f, null), EmbeddingSpec.Parse(f));
        Assert.Equal(new EmbeddingSpec(f, "v1"), EmbeddingSpec.Parse(f + ":v1"));
        Assert.Equal(new EmbeddingSpec(f, "<cat-toy>"), EmbeddingSpec.Parse(f + ":<cat-toy>"));
        Assert.Equal(new EmbeddingSpec(f, "bad-hands-5"), EmbeddingSpec.Parse(f + ":bad-hands-5"));
        foreach (var bad in new[] { "two words", "-dash", "v1-", "<a b>", "ü" })
            Assert.Contains("is not a word", Assert.Throws<InputException>(() => EmbeddingSpec.Parse(f + ":" + bad)).Message);
    }

    [Fact]
    public void Default_embedding_word_is_the_stem_for_a1111_and_the_token_for_diffusers()
    {
        Assert.Equal("EasyNegative", EmbeddingImport.DefaultWord("/x/EasyNegative.safetensors", "emb_params"));
        Assert.Equal("v1", EmbeddingImport.DefaultWord("/x/v1.safetensors", "*"));
        Assert.Equal("<cat-toy>", EmbeddingImport.DefaultWord("/x/learned_embeds.safetensors", "<cat-toy>"));
        Assert.Null(EmbeddingImport.DefaultWord("/x/learned_embeds.safetensors", "two words"));
        Assert.Null(EmbeddingImport.DefaultWord("/x/my embedding.safetensors", "emb_params"));
    }
}
