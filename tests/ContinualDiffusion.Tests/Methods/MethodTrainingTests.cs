using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Methods;

/// Every `--method` end to end on the sd-tiny fixture (few steps: what each trains, stores and samples with, not
/// quality), and each method's composition checked on the weights `cdiff sample --run` really uses.
public class MethodTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-methods-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Run => Path.Combine(_dir, "run");
    private string Images(int k) => TestImages.WriteFolder(Path.Combine(_dir, $"concept{k}"), 3, new Rgb24((byte)(60 * k), 40, (byte)(200 - 50 * k)));

    private static TrainingConfig Config(string method) => new()
    {
        Method = method, Steps = 3, Rank = 2, LearningRate = 1e-2, TokenLearningRate = 1e-2, Lambda = 1, CheckpointEvery = 0, Seed = 7,
    };

    private void TrainTwo(string method)
    {
        for (int task = 1; task <= 2; task++)
            ContinualTraining.TrainTask(new TrainTaskRequest
            {
                Task = task, ImagesDir = Images(task), RunDir = Run, ModelPath = task == 1 ? Fixture.SdTiny : null, Config = Config(method),
            });
    }

    private IReadOnlyList<AdapterSet> Adapters()
    {
        var run = new RunDirectory(Run);
        var manifest = run.ReadManifest();
        return AdapterFile.LoadSequence(manifest.Tasks.Select(t => Path.Combine(run.Root, t.AdapterFile)));
    }

    /// Layer name → (base weight, weight `cdiff sample --run` uses), both float32 CPU copies.
    private Dictionary<string, (Tensor Base, Tensor Sampled)> Weights(StableDiffusion sampling)
    {
        using var baseModel = StableDiffusion.Open(Fixture.SdTiny);
        var before = RunModel.BaseWeights(baseModel);
        return RunModel.BaseWeights(sampling).ToDictionary(kv => kv.Key, kv => (before[kv.Key].detach().clone(), kv.Value.detach().clone()));
    }

    private static void AssertClose(Tensor expected, Tensor actual, double tolerance, string what)
    {
        double diff = (expected.sub(actual)).abs().max().item<float>();
        Assert.True(diff <= tolerance, $"{what}: max |difference| {diff:E2} > {tolerance:E1}");
    }

    [Theory]
    [InlineData("clora")]
    [InlineData("lora")]
    [InlineData("textual-inversion")]
    [InlineData("custom-diffusion")]
    [InlineData("custom-diffusion-merge")]
    [InlineData("magmax")]
    [InlineData("ortho-init")]
    [InlineData("anchored-lora")]
    public void Every_method_trains_two_tasks_stores_what_it_trained_and_samples(string name)
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo(name);
        var method = ContinualMethod.Parse(name);
        var manifest = new RunDirectory(Run).ReadManifest();
        Assert.Equal(name, manifest.Method);
        Assert.All(manifest.Tasks, t => Assert.Equal(method.LowRank ? 2 : 0, t.Rank));

        var adapters = Adapters();
        try
        {
            foreach (var a in adapters)
            {
                Assert.Equal(method.Id, a.Metadata.Method);
                Assert.Equal(method.LowRank, a.Layers.Count > 0);
                Assert.Equal(method.Dense, a.DenseLayers.Count > 0);
                Assert.Equal(method.TrainsUnet ? 2 * 11 : 0, a.LayerNames.Count()); // sd-tiny: 11 cross-attentions × (to_k, to_v)
                Assert.True(a.LayerNames.All(l => a.Delta(l)!.abs().max().item<float>() > 0), "every trained layer moved");
            }
        }
        finally { foreach (var a in adapters) a.Dispose(); }

        using var model = RunModel.LoadForSampling(new RunDirectory(Run));
        var image = new TextToImagePipeline(model).Generate(new SampleRequest { Prompt = "<v1> and <v2>", Steps = 2, Seed = 1 });
        Assert.True(torch.isfinite(image).all().item<bool>());
    }

    [Fact]
    public void Textual_inversion_samples_with_the_base_models_unet_weights()
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo("textual-inversion");
        using var model = RunModel.LoadForSampling(new RunDirectory(Run));
        foreach (var (name, (w0, w)) in Weights(model)) Assert.True(w0.equal(w).all().item<bool>(), name);
        Assert.True(model.Tokenizer.TryGetConceptTokenId("<v2>", out _));
    }

    [Fact]
    public void Custom_diffusion_samples_with_the_sum_of_its_dense_deltas()
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo("custom-diffusion");
        var adapters = Adapters();
        try
        {
            using var model = RunModel.LoadForSampling(new RunDirectory(Run));
            foreach (var (name, (w0, w)) in Weights(model))
                AssertClose(w0.Plus(adapters[0].DenseLayers[name]).Plus(adapters[1].DenseLayers[name]), w, 1e-6, name);
        }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    [Fact]
    public void MagMax_samples_with_the_larger_magnitude_element_of_the_two_tasks()
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo("magmax");
        var adapters = Adapters();
        try
        {
            using var model = RunModel.LoadForSampling(new RunDirectory(Run));
            foreach (var (name, (w0, w)) in Weights(model))
            {
                var d1 = adapters[0].Delta(name)!;
                var d2 = adapters[1].Delta(name)!;
                var expected = torch.where(d2.abs().ge(d1.abs()), d2, d1);
                AssertClose(w0.Plus(expected), w, 1e-6, name);
                Assert.False(w0.Plus(d1).Plus(d2).allclose(w, 1e-6, 1e-7), $"{name}: the merge must differ from the sum");
            }
        }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    [Fact]
    public void Ortho_init_starts_the_second_task_orthogonal_to_the_row_space_of_the_first()
    {
        using var scope = torch.NewDisposeScope();
        ContinualTraining.TrainTask(new TrainTaskRequest { Task = 1, ImagesDir = Images(1), RunDir = Run, ModelPath = Fixture.SdTiny, Config = Config("ortho-init") });
        using var model = StableDiffusion.Open(Fixture.SdTiny);
        var adapters = Adapters();
        Dictionary<string, Tensor> past;
        try
        {
            foreach (var a in adapters) model.AddConcept(a.Metadata.Token, a.TokenEmbedding);
            past = TaskComposition.ForTraining(ContinualMethod.OrthoInit, RunModel.BaseWeights(model), adapters)!;
        }
        finally { foreach (var a in adapters) a.Dispose(); }
        long id = model.Tokenizer.AddConceptToken("<v2>");
        model.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
        using var latents = ConceptLatents.Encode(model.Vae, torch.rand(2, 3, 32, 32).Times(2).Minus(1), withFlips: false);
        using var trainer = new TaskTrainer(model, latents, "<v2>", id, past, Config("ortho-init"), task: 2);
        foreach (var layer in trainer.Layers.Cast<ContinualLoraLinear>())
        {
            var p = layer.PastDelta;
            double scale = p.norm().item<float>() * layer.LoraB.norm().item<float>();
            double leak = p.matmul(layer.LoraB.t()).norm().item<float>();
            Assert.True(leak <= 1e-5 * scale, $"{layer.LayerName}: ‖P Bᵀ‖ = {leak:E2}, ‖P‖‖B‖ = {scale:E2}");
        }
    }

    [Fact]
    public void Custom_diffusion_merge_keeps_what_each_concepts_own_weights_give_on_its_prompts()
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo("custom-diffusion-merge");
        var adapters = Adapters();
        try
        {
            using var model = RunModel.LoadForSampling(new RunDirectory(Run));
            var features = adapters.Select(a => MergeFeatures.ConceptToken(model, a.Metadata.Token)).ToList();
            foreach (var (name, (w0, w)) in Weights(model))
            {
                Assert.False(w0.allclose(w, 1e-6, 1e-7), $"{name}: the merge changed nothing");
                for (int i = 0; i < adapters.Count; i++)
                {
                    var own = w0.Plus(adapters[i].DenseLayers[name]);
                    var wanted = features[i].matmul(own.t());
                    var got = features[i].matmul(w.t());
                    double rel = got.sub(wanted).norm().item<float>() / wanted.norm().item<float>();
                    Assert.True(rel < 1e-4, $"{name}, concept {i + 1}: the merged weight misses its target outputs by {rel:E2} (relative)");
                }
            }
        }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    [Fact]
    public void A_run_keeps_its_method()
    {
        TrainTwo("magmax");
        var e = Assert.Throws<InputException>(() => ContinualTraining.TrainTask(new TrainTaskRequest
        {
            Task = 3, ImagesDir = Images(3), RunDir = Run, Config = Config("custom-diffusion"),
        }));
        Assert.Contains("magmax", e.Message);
        Assert.Contains("custom-diffusion", e.Message);
    }

    [Theory]
    [InlineData("custom-diffusion")]
    [InlineData("magmax")]
    [InlineData("textual-inversion")]
    [InlineData("custom-diffusion-merge")]
    public void A_merged_export_holds_the_weights_sample_run_uses(string method)
    {
        using var scope = torch.NewDisposeScope();
        TrainTwo(method);
        var dir = Path.Combine(_dir, "merged");
        RunExport.Export(new ExportRequest { RunDir = Run, Format = ExportFormat.Merged, OutPath = dir });
        using var viaRun = RunModel.LoadForSampling(new RunDirectory(Run));
        using var merged = StableDiffusion.Open(dir);
        var mergedParameters = merged.Unet.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in viaRun.Unet.named_parameters())
            AssertClose(p, mergedParameters[name], 0, $"unet {name}");
        // The tokens (all textual inversion changes): same ids, same text-encoder states.
        const string prompt = "a photo of <v1> and <v2>";
        Assert.Equal(viaRun.Tokenizer.Encode(prompt).InputIds, merged.Tokenizer.Encode(prompt).InputIds);
        using var ids = viaRun.Tokenize([prompt]);
        using var a = viaRun.TextEncoder.forward(ids);
        using var b = merged.TextEncoder.forward(ids);
        AssertClose(a, b, 0, "text encoder states");
    }

    [Fact]
    public void A_later_task_without_method_keeps_the_runs_method_and_a_manifest_that_mixes_methods_is_refused()
    {
        TrainTwo("magmax");
        var images = Images(3);
        var r = CliRunner.Run("train", "--task", "3", "--images", images, "--run", Run, "--steps", "2", "--rank", "2", "--checkpoint-every", "0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var manifest = new RunDirectory(Run).ReadManifest();
        Assert.Equal("magmax", manifest.Tasks.Single(t => t.Task == 3).Method);

        var path = new RunDirectory(Run).ManifestPath;
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        Assert.Equal("magmax", (string?)json["method"]);
        json["method"] = "lora"; // the run-level method edited, the tasks' left: sampling would compose the wrong way
        File.WriteAllText(path, json.ToJsonString());
        var e = Assert.Throws<InputException>(() => new RunDirectory(Run).ReadManifest());
        Assert.Contains("a run keeps one method", e.Message);
    }

    [Fact]
    public void Custom_diffusion_merge_refuses_a_task_beyond_what_the_text_width_can_merge()
    {
        Assert.Equal(16, TaskComposition.MaxMergedConcepts(32));  // the Fashion and sd-tiny models: 2 rows per concept
        Assert.Equal(384, TaskComposition.MaxMergedConcepts(768)); // SD 1.x
    }

    [Theory]
    [InlineData("magmax", "kohya", "not a sum of LoRAs")]
    [InlineData("custom-diffusion", "diffusers", "not a sum of LoRAs")]
    [InlineData("custom-diffusion-merge", "peft", "not a sum of LoRAs")]
    public void An_export_the_method_cannot_give_is_refused_saying_what_works(string method, string format, string expected)
    {
        TrainTwo(method);
        var f = ExportFormats.Parse(format);
        var e = Assert.Throws<InputException>(() => RunExport.Export(new ExportRequest { RunDir = Run, Format = f, OutPath = Path.Combine(_dir, "out") }));
        Assert.Contains(expected, e.Message);
        Assert.Contains(method, e.Message);
        Assert.False(Path.Exists(Path.Combine(_dir, "out")));
    }
}
