using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// C-LoRA tasks end to end on the sd-tiny fixture (few steps; behaviour, not quality).
public class ContinualTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-train-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Run => Path.Combine(_dir, "run");
    private string Images(int k) => TestImages.WriteFolder(Path.Combine(_dir, $"concept{k}"), 3, new Rgb24((byte)(60 * k), 40, (byte)(200 - 50 * k)));

    private static TrainingConfig Config(int steps = 4) => new()
    {
        Steps = steps, Rank = 2, LearningRate = 1e-3, TokenLearningRate = 1e-2, CheckpointEvery = 2, Seed = 7,
        PromptTemplates = ["a photo of {}", "a rendering of {}"],
    };

    private TrainTaskRequest Request(int task, TrainingConfig? config = null) => new()
    {
        Task = task, ImagesDir = Images(task), RunDir = Run, ModelPath = task == 1 ? Fixture.SdTiny : null, Config = config ?? Config(),
    };

    private Dictionary<string, byte[]> Snapshot() =>
        Directory.EnumerateFiles(Run, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}checkpoints{Path.DirectorySeparatorChar}"))
            .ToDictionary(f => f, File.ReadAllBytes);

    [Fact]
    public void Two_tasks_commit_adapters_and_manifest_and_sampling_knows_both_tokens()
    {
        var r1 = ContinualTraining.TrainTask(Request(1));
        var r2 = ContinualTraining.TrainTask(Request(2));
        var manifest = new RunDirectory(Run).ReadManifest();
        Assert.Equal([1, 2], manifest.Tasks.Select(t => t.Task));
        Assert.Equal(["<v1>", "<v2>"], manifest.Tasks.Select(t => t.Token));
        Assert.Equal([49408L, 49409L], manifest.Tasks.Select(t => t.TokenId));
        Assert.Empty(new RunDirectory(Run).VerifyIntegrity(manifest));
        Assert.False(Directory.Exists(new RunDirectory(Run).CheckpointDir(1)), "checkpoints are removed once a task is committed");
        Assert.True(File.Exists(r2.AdapterPath));
        Assert.All(manifest.Tasks, t => Assert.True(double.IsFinite(t.FinalLoss)));

        using var model = RunModel.LoadForSampling(new RunDirectory(Run));
        using var scope = torch.NewDisposeScope();
        var image = new TextToImagePipeline(model).Generate(new SampleRequest { Prompt = "<v1> and <v2> at the beach", Steps = 2, Seed = 1 });
        Assert.Equal(new long[] { 1, 32, 32, 3 }, image.shape);
        Assert.True(torch.isfinite(image).all().item<bool>());
    }

    [Fact]
    public void A_fixed_seed_gives_the_same_adapter_twice()
    {
        ContinualTraining.TrainTask(Request(1));
        var first = File.ReadAllBytes(Directory.GetFiles(Path.Combine(Run, "adapters")).Single());
        using var a = AdapterFile.Load(Directory.GetFiles(Path.Combine(Run, "adapters")).Single());
        ContinualTraining.TrainTask(Request(1) with { Overwrite = true });
        var path = Directory.GetFiles(Path.Combine(Run, "adapters")).Single(); // the replaced file is gone
        using var b = AdapterFile.Load(path);
        foreach (var (name, f) in a.Layers)
        {
            Assert.True(f.A.equal(b.Layers[name].A).all().item<bool>(), name);
            Assert.True(f.B.equal(b.Layers[name].B).all().item<bool>(), name);
        }
        Assert.True(a.TokenEmbedding.equal(b.TokenEmbedding).all().item<bool>());
        Assert.NotEmpty(first);
    }

    [Fact]
    public void A_diverging_task_leaves_the_run_exactly_as_it_was()
    {
        ContinualTraining.TrainTask(Request(1));
        var before = Snapshot();
        var exploding = Config(steps: 6) with { LearningRate = 1e30, TokenLearningRate = 1e30, MaxGradNorm = 1e30 };
        Assert.Throws<TrainingDivergedException>(() => ContinualTraining.TrainTask(Request(2, exploding)));
        var after = Snapshot();
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (k, v) in before) Assert.Equal(v, after[k]);
        Assert.False(File.Exists(Path.Combine(Run, RunLock.FileName)), "the lock is released");
    }

    [Fact]
    public void An_interrupted_task_leaves_the_run_intact_and_resume_finishes_it_identically()
    {
        ContinualTraining.TrainTask(Request(1));
        var before = Snapshot();
        using var cts = new CancellationTokenSource();
        var config = Config(steps: 6);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ContinualTraining.TrainTask(Request(2, config), step => { if (step.Step == 3) cts.Cancel(); }, cancel: cts.Token));
        var after = Snapshot();
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        Assert.Equal(1, new RunDirectory(Run).ReadManifest().LastTask);
        Assert.True(File.Exists(Path.Combine(new RunDirectory(Run).CheckpointDir(2), "state.safetensors")));

        var steps = new List<int>();
        var resumed = ContinualTraining.TrainTask(Request(2, config) with { Resume = true }, s => steps.Add(s.Step));
        Assert.Equal([3, 4, 5, 6], steps); // continued after the step-2 checkpoint
        using var resumedAdapter = AdapterFile.Load(resumed.AdapterPath);

        // The same task trained without interruption in a fresh run gives the same adapter.
        var otherRun = Path.Combine(_dir, "run2");
        ContinualTraining.TrainTask(Request(1) with { RunDir = otherRun });
        var straight = ContinualTraining.TrainTask(Request(2, config) with { RunDir = otherRun });
        using var straightAdapter = AdapterFile.Load(straight.AdapterPath);
        foreach (var (name, f) in straightAdapter.Layers)
            Assert.True((f.A - resumedAdapter.Layers[name].A).abs().max().item<float>() < 1e-6f, name);
    }

    [Fact]
    public void A_checkpoint_resumes_only_in_the_dtype_it_was_trained_in()
    {
        var bf16 = new ComputePrecision(ScalarType.BFloat16);
        ContinualTraining.TrainTask(Request(1));
        using var cts = new CancellationTokenSource();
        var config = Config(steps: 6);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ContinualTraining.TrainTask(Request(2, config) with { Precision = bf16 }, step => { if (step.Step == 3) cts.Cancel(); }, cancel: cts.Token));

        var inFp32 = Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2, config) with { Resume = true }));
        Assert.Contains("state.safetensors was trained with --dtype bf16, not --dtype fp32; resume with --dtype bf16,", inFp32.Message);
        var withVae = Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2, config) with { Resume = true, Precision = bf16 with { VaeFp32 = true } }));
        Assert.Contains("--dtype bf16, not --dtype bf16 --vae-fp32; resume with --dtype bf16,", withVae.Message);
        var otherSteps = Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2, Config(steps: 8)) with { Resume = true, Precision = bf16 }));
        Assert.Contains("other images, base model or options", otherSteps.Message);

        var steps = new List<int>();
        ContinualTraining.TrainTask(Request(2, config) with { Resume = true, Precision = bf16 }, s => steps.Add(s.Step));
        Assert.Equal([3, 4, 5, 6], steps);
    }

    [Fact]
    public void Sequence_rules_are_enforced_before_anything_is_touched()
    {
        Assert.Contains("start with --task 1", Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2) with { ModelPath = Fixture.SdTiny })).Message);
        Assert.Contains("--model is required", Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(1) with { ModelPath = null })).Message);
        ContinualTraining.TrainTask(Request(1));
        var before = Snapshot();
        Assert.Contains("--overwrite", Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(1))).Message);
        Assert.Contains("train task 2 next", Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(3))).Message);
        Assert.Contains("no checkpoint", Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2) with { Resume = true })).Message);
        var after = Snapshot();
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
    }

    [Fact]
    public void A_different_base_model_is_refused_by_hash()
    {
        ContinualTraining.TrainTask(Request(1));
        var copy = Path.Combine(_dir, "other-model");
        CopyDirectory(Fixture.SdTiny, copy);
        var unet = Path.Combine(copy, "unet", "diffusion_pytorch_model.safetensors");
        var tensors = SafeTensorsFile.Load(unet);
        tensors["conv_in.bias"].AddInPlace(1f);
        SafeTensorsFile.Save(unet, tensors);
        var e = Assert.Throws<InputException>(() => ContinualTraining.TrainTask(Request(2) with { ModelPath = copy }));
        Assert.Contains("not the base model", e.Message);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(d.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, f.Replace(from, to));
    }
}
