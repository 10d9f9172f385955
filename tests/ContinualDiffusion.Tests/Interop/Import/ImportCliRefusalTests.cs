using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Interop.Import;

/// `sample --lora/--embedding` refusals that are decided before the model loads (no tensor): one line, exit 2.
public class ImportCliRefusalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-import-cli-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private CliResult Sample(params string[] extra) =>
        CliRunner.Run(["sample", "--model", Fixture.SdTiny, "--prompt", "a photo", "--steps", "1", "--out", Path.Combine(_dir, "s"), .. extra]);

    private static string OneLine(CliResult r)
    {
        Assert.Equal(2, r.ExitCode);
        return Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("cdiff:", StringComparison.Ordinal));
    }

    [Fact]
    public void A_missing_lora_or_embedding_file()
    {
        Assert.Contains("--lora", OneLine(Sample("--lora", Path.Combine(_dir, "nope.safetensors"))));
        Assert.Contains("no such file", OneLine(Sample("--embedding", Path.Combine(_dir, "nope.safetensors:w"))));
    }

    [Fact]
    public void A_bad_scale()
    {
        var f = Path.Combine(_dir, "style.safetensors");
        File.WriteAllText(f, "x");
        Assert.Contains("'half' is not a number", OneLine(Sample("--lora", f + ":half")));
    }

    [Fact]
    public void Pickles_with_the_reason()
    {
        var pt = Path.Combine(_dir, "style.pt");
        File.WriteAllText(pt, "x");
        Assert.Contains("loading a pickle can run arbitrary code", OneLine(Sample("--lora", pt)));
        var emb = Path.Combine(_dir, "EasyNegative.pt");
        File.WriteAllText(emb, "x");
        Assert.Contains("string_to_param", OneLine(Sample("--embedding", emb)));
    }
}
