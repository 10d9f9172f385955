using ContinualDiffusion.Imaging;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Interop.Export;

/// `cdiff export` end to end through the real CLI on a run trained by `cdiff train` (two tasks, 2 steps each).
public class ExportCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-export-cli-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Train_two_tasks_export_every_format_and_the_merged_folder_samples_like_the_run()
    {
        var run = Path.Combine(_dir, "run");
        string[] common = ["--run", run, "--steps", "2", "--rank", "2", "--checkpoint-every", "0"];
        var t1 = CliRunner.Run(["train", "--task", "1", "--images", TestImages.WriteFolder(Path.Combine(_dir, "p1"), 3, new Rgb24(200, 40, 40)), "--model", Fixture.SdTiny, .. common]);
        Assert.True(t1.ExitCode == 0, t1.Stderr);
        var t2 = CliRunner.Run(["train", "--task", "2", "--images", TestImages.WriteFolder(Path.Combine(_dir, "p2"), 3, new Rgb24(40, 40, 200)), .. common]);
        Assert.True(t2.ExitCode == 0, t2.Stderr);

        var kohya = Path.Combine(_dir, "out", "concepts.safetensors");
        var k = CliRunner.Run("export", "--run", run, "--format", "kohya", "--out", kohya);
        Assert.True(k.ExitCode == 0, k.Stderr);
        Assert.Contains("<v1>: write \"v1\" in the prompt", k.Stdout);
        Assert.Contains("<v2>: write \"v2\" in the prompt", k.Stdout);
        Assert.True(File.Exists(Path.Combine(_dir, "out", "v1.safetensors")));
        Assert.Equal(22, KohyaLoraFile.ReadDeltas(kohya, SyntheticRun.LayerNames).Count);

        var again = CliRunner.Run("export", "--run", run, "--format", "kohya", "--out", kohya);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("--overwrite", again.Stderr);
        var replaced = CliRunner.Run("export", "--run", run, "--format", "kohya", "--out", kohya, "--tasks", "1", "--overwrite");
        Assert.True(replaced.ExitCode == 0, replaced.Stderr);

        foreach (var format in new[] { "diffusers", "peft" })
        {
            var r = CliRunner.Run("export", "--run", run, "--format", format, "--out", Path.Combine(_dir, format), "--rank", "3");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("relative reconstruction error", r.Stdout);
        }

        var merged = Path.Combine(_dir, "merged");
        var m = CliRunner.Run("export", "--run", run, "--format", "merged", "--out", merged);
        Assert.True(m.ExitCode == 0, m.Stderr);

        var viaRun = CliRunner.Run("sample", "--run", run, "--prompt", "a photo of <v1> and <v2>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "s-run"));
        Assert.True(viaRun.ExitCode == 0, viaRun.Stderr);
        var viaMerged = CliRunner.Run("sample", "--model", merged, "--prompt", "a photo of <v1> and <v2>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "s-merged"));
        Assert.True(viaMerged.ExitCode == 0, viaMerged.Stderr);
        var (a, _) = PngFile.Load(viaRun.Stdout.Trim());
        var (b, _) = PngFile.Load(viaMerged.Stdout.Trim());
        Support.Fixture.AssertIdentical(a, b, "cdiff sample --model MERGED draws what cdiff sample --run draws");
    }
}
