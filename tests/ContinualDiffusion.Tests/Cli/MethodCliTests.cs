using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Cli;

/// `cdiff train --method`: options that do not apply to the method are refused naming both; status shows the method.
public class MethodCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-method-cli-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("textual-inversion", "--rank", "4")]
    [InlineData("textual-inversion", "--lr", "0.001")]
    [InlineData("custom-diffusion", "--rank", "4")]
    [InlineData("lora", "--lambda", "10")]
    [InlineData("magmax", "--lambda", "10")]
    public void An_option_the_method_does_not_have_is_refused_naming_both(string method, string option, string value)
    {
        var images = TestImages.WriteFolder(Path.Combine(_dir, "p1"), 2, new Rgb24(200, 40, 40));
        var run = Path.Combine(_dir, "run");
        var r = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--method", method, option, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(option, r.Stderr);
        Assert.Contains(method, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.False(Directory.Exists(Path.Combine(run, "adapters")), "nothing is written");
    }

    [Fact]
    public void Textual_inversion_trains_from_the_cli_and_status_shows_the_method_with_rank_zero()
    {
        var images = TestImages.WriteFolder(Path.Combine(_dir, "p1"), 2, new Rgb24(200, 40, 40));
        var run = Path.Combine(_dir, "run");
        var t = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run,
            "--method", "textual-inversion", "--steps", "2", "--checkpoint-every", "0");
        Assert.True(t.ExitCode == 0, t.Stderr);
        var s = CliRunner.Run("status", "--run", run);
        Assert.Equal(0, s.ExitCode);
        Assert.Contains("method       textual-inversion", s.Stdout);
        var row = s.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("1  <v1>", StringComparison.Ordinal));
        Assert.Contains("textual-inversion    0", row);   // rank 0: no low-rank factors
        Assert.Contains(" 32 ", row);                      // parameters: the token embedding row alone (hidden 32)
    }
}
