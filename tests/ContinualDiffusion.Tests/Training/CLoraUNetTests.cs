using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// C-LoRA inside the real (tiny) UNet and text encoder.
public class CLoraUNetTests
{
    private static StableDiffusion Load() => StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));

    private static Tensor UnetOut(StableDiffusion m)
    {
        using var noGrad = torch.no_grad();
        return m.Unet.forward(Fixture.Ref("unet.sample"), Fixture.Ref("unet.timesteps"), Fixture.Ref("unet.encoder_hidden_states"));
    }

    [Fact]
    public void A_fresh_adapter_leaves_the_UNet_output_unchanged()
    {
        using var scope = torch.NewDisposeScope();
        using var m = Load();
        var before = UnetOut(m);
        var layers = LoraInjector.Inject(m.CrossAttentionKeyValueTargets(), 4);
        Assert.Equal(22, layers.Count); // 11 attn2 blocks × (to_k, to_v)
        Assert.True(UnetOut(m).equal(before).all().item<bool>());
        Fixture.AssertClose(before, Fixture.Ref("unet.out"), what: "base UNet");
    }

    [Fact]
    public void One_step_changes_only_the_current_factors_and_the_new_token()
    {
        using var scope = torch.NewDisposeScope();
        using var m = Load();
        long id = m.Tokenizer.AddConceptToken("<v1>");
        m.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
        var frozen = StateDictLoader.Targets(m.Unet).Concat(StateDictLoader.Targets(m.TextEncoder)).Concat(StateDictLoader.Targets(m.Vae))
            .ToDictionary(kv => kv.Key + kv.Value.GetHashCode(), kv => (kv.Value, kv.Value.clone()));
        var images = torch.rand(2, 3, 32, 32).Times(2).Minus(1);
        using var latents = ConceptLatents.Encode(m.Vae, images, withFlips: false);
        var config = new TrainingConfig { Steps = 1, Rank = 2, Seed = 1, LearningRate = 1e-2 };
        var zeros = RunModelWeights(m).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
        using var trainer = new TaskTrainer(m, latents, "<v1>", id, zeros, config, task: 1);
        var tokenBefore = trainer.TokenEmbedding.clone();
        var aBefore = trainer.Layers.Cast<ContinualLoraLinear>().Select(l => l.LoraA.clone()).ToList();
        trainer.TrainStep();

        foreach (var (_, (t, copy)) in frozen) Assert.True(t.equal(copy).all().item<bool>());
        Assert.False(trainer.TokenEmbedding.equal(tokenBefore).all().item<bool>());
        Assert.Contains(trainer.Layers.Cast<ContinualLoraLinear>().Select((l, i) => !l.LoraA.equal(aBefore[i]).all().item<bool>()), changed => changed);
    }

    /// Regression: with oneDNN on, a batch ≥ 2 backward through the UNet gave all-NaN gradients in about one
    /// fresh process in three (TorchSetup.UseTrainingSafeKernels); training now keeps oneDNN on and retries such a
    /// step without it (the test above). The test process runs with oneDNN off throughout (Support/TestProcessSetup),
    /// where a few batch-4 steps must stay finite.
    [Fact]
    public void Training_with_batch_four_stays_finite_with_oneDNN_off()
    {
        using var scope = torch.NewDisposeScope();
        using var m = Load();
        long id = m.Tokenizer.AddConceptToken("<v1>");
        m.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
        using var latents = ConceptLatents.Encode(m.Vae, torch.rand(4, 3, 32, 32).Times(2).Minus(1), withFlips: false);
        var config = new TrainingConfig { Steps = 3, Rank = 2, Seed = 3, BatchSize = 4 };
        var zeros = RunModelWeights(m).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
        using var trainer = new TaskTrainer(m, latents, "<v1>", id, zeros, config, task: 1);
        Assert.False(ContinualDiffusion.Runtime.TorchSetup.MkldnnEnabled());
        double loss = trainer.Run();
        Assert.True(double.IsFinite(loss));
        Assert.All(trainer.Layers.Cast<ContinualLoraLinear>(), l => Assert.True(l.LoraA.isfinite().all().item<bool>() && l.LoraB.isfinite().all().item<bool>(), l.LayerName));
    }

    /// oneDNN stays on in training; a step with non-finite gradients is computed again with it off. Faked here (the
    /// process-wide switch is never flipped in tests): a poisoned UNet weight makes the first attempt NaN, and the
    /// fake "oneDNN off" scope cures it, so the retry is finite and the step applies. Without the cure the task
    /// stops as diverged and nothing moves.
    [Fact]
    public void A_non_finite_step_is_retried_with_oneDNN_off_and_diverges_only_if_the_retry_fails_too()
    {
        using var scope = torch.NewDisposeScope();
        foreach (bool cures in new[] { true, false })
        {
            using var m = Load();
            long id = m.Tokenizer.AddConceptToken("<v1>");
            m.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
            using var latents = ConceptLatents.Encode(m.Vae, torch.rand(2, 3, 32, 32).Times(2).Minus(1), withFlips: false);
            var zeros = RunModelWeights(m).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
            var weight = StateDictLoader.Targets(m.Unet)["conv_in.weight"];
            var good = weight.clone();
            using (torch.no_grad()) weight.FillInPlace(double.NaN);
            int suspended = 0;
            IDisposable Suspend()
            {
                suspended++;
                if (cures) using (torch.no_grad()) weight.copy_(good);
                return new Restore();
            }
            var config = new TrainingConfig { Steps = 1, Rank = 2, Seed = 1, LearningRate = 1e-2 };
            using var trainer = new TaskTrainer(m, latents, "<v1>", id, zeros, config, task: 1, oneDnnEnabled: () => true, suspendOneDnn: Suspend);
            var tokenBefore = trainer.TokenEmbedding.clone();
            if (cures)
            {
                var report = trainer.TrainStep();
                Assert.True(double.IsFinite(report.Loss));
                Assert.Equal(1, trainer.RetriedSteps);
                Assert.False(trainer.TokenEmbedding.equal(tokenBefore).all().item<bool>()); // the retried step applied
            }
            else
            {
                var e = Assert.Throws<TrainingDivergedException>(() => trainer.TrainStep());
                Assert.Contains("task 1: the loss became NaN at step 1", e.Message);
                Assert.True(trainer.TokenEmbedding.equal(tokenBefore).all().item<bool>()); // nothing applied
                Assert.Equal(0, trainer.Step);
            }
            Assert.Equal(1, suspended);
        }
    }

    private sealed class Restore : IDisposable { public void Dispose() { } }

    /// bf16 weights on the CPU: oneDNN is never switched off (its fallback kernels take minutes a step), a step
    /// non-finite twice is dropped without touching the trainable values, training goes on, and ten dropped in a
    /// row stop the task as diverged.
    [Fact]
    public void In_bf16_on_the_CPU_a_step_non_finite_twice_is_dropped_and_ten_in_a_row_diverge()
    {
        using var scope = torch.NewDisposeScope();
        using var setup = new Bf16Task(steps: 30);
        var (trainer, weight, messages) = (setup.Trainer, setup.ConvIn, setup.Messages);
        var good = weight.clone();
        var first = trainer.TrainStep(); // a finite step first, so the optimiser has moments that would move the values
        Assert.True(first.Applied);
        var tokenBefore = trainer.TokenEmbedding.clone();
        var factorsBefore = trainer.Layers.SelectMany(l => l.NamedTrainableParameters()).Select(p => p.Value.clone()).ToList();

        using (torch.no_grad()) weight.FillInPlace(double.NaN);
        for (int i = 0; i < 3; i++) Assert.False(trainer.TrainStep().Applied);
        Assert.Equal(4, trainer.Step);
        Assert.Equal(3, trainer.SkippedSteps);
        Assert.Equal(3, trainer.RetriedSteps);
        Assert.True(trainer.TokenEmbedding.equal(tokenBefore).all().item<bool>()); // nothing applied
        Assert.All(trainer.Layers.SelectMany(l => l.NamedTrainableParameters()).Zip(factorsBefore),
            p => Assert.True(p.First.Value.equal(p.Second).all().item<bool>(), p.First.Suffix));
        Assert.Contains(messages, s => s.StartsWith("task 1: step 3 non-finite (", StringComparison.Ordinal) && s.EndsWith("its update is dropped (2 so far)", StringComparison.Ordinal));

        using (torch.no_grad()) weight.copy_(good);
        Assert.True(trainer.TrainStep().Applied);
        Assert.Equal(3, trainer.SkippedSteps);
        Assert.False(trainer.TokenEmbedding.equal(tokenBefore).all().item<bool>()); // a finite step applies

        using (torch.no_grad()) weight.FillInPlace(double.NaN);
        for (int i = 0; i < 9; i++) trainer.TrainStep();
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.TrainStep());
        Assert.Contains("train with --dtype fp32", e.Message);
        Assert.Contains("stayed non-finite for 10 steps", e.Message);
        Assert.Equal(0, setup.Suspensions);
    }

    [Fact]
    public void In_bf16_on_the_CPU_a_dropped_last_step_leaves_the_task_the_last_applied_loss()
    {
        using var scope = torch.NewDisposeScope();
        using var setup = new Bf16Task(steps: 3);
        var applied = new List<double>();
        double final = setup.Trainer.Run(r =>
        {
            if (r.Applied) applied.Add(r.Loss);
            if (r.Step == 2) using (torch.no_grad()) setup.ConvIn.FillInPlace(double.NaN);
        });
        Assert.Equal(1, setup.Trainer.SkippedSteps);
        Assert.Equal(2, applied.Count);
        Assert.Equal(applied[^1], final);
        Assert.True(double.IsFinite(final));
    }

    /// The retried and dropped counts go into the checkpoint and on after `--resume` (they end in the manifest); a
    /// checkpoint from before they were kept resumes counting from zero, and a damaged count is refused.
    [Fact]
    public void A_resumed_task_goes_on_counting_its_retried_and_dropped_steps()
    {
        using var scope = torch.NewDisposeScope();
        Dictionary<string, Tensor> checkpoint;
        using (var first = new Bf16Task(steps: 6))
        {
            Assert.True(first.Trainer.TrainStep().Applied);
            using (torch.no_grad()) first.ConvIn.FillInPlace(double.NaN);
            first.Trainer.TrainStep();
            first.Trainer.TrainStep();
            checkpoint = first.Trainer.CheckpointTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        }
        Assert.Equal(2L, checkpoint["retried_steps"].item<long>());
        Assert.Equal(2L, checkpoint["dropped_steps"].item<long>());

        using (var resumed = new Bf16Task(steps: 6))
        {
            resumed.Trainer.RestoreCheckpoint(checkpoint, "state.safetensors");
            Assert.Equal((3, 2, 2), (resumed.Trainer.Step, resumed.Trainer.RetriedSteps, resumed.Trainer.SkippedSteps));
            using (torch.no_grad()) resumed.ConvIn.FillInPlace(double.NaN);
            Assert.False(resumed.Trainer.TrainStep().Applied);
            Assert.Equal((3, 3), (resumed.Trainer.RetriedSteps, resumed.Trainer.SkippedSteps));
        }

        using (var old = new Bf16Task(steps: 6))
        {
            old.Trainer.RestoreCheckpoint(checkpoint.Where(kv => kv.Key is not ("retried_steps" or "dropped_steps")).ToDictionary(), "old.safetensors");
            Assert.Equal((3, 0, 0), (old.Trainer.Step, old.Trainer.RetriedSteps, old.Trainer.SkippedSteps));
        }

        using var damaged = new Bf16Task(steps: 6);
        var bad = new Dictionary<string, Tensor>(checkpoint) { ["dropped_steps"] = torch.tensor(4L) }; // more than the 3 steps taken
        var e = Assert.Throws<InputException>(() => damaged.Trainer.RestoreCheckpoint(bad, "state.safetensors"));
        Assert.Equal("state.safetensors: key 'dropped_steps' must hold one integer from 0 to the step (3)", e.Message);
    }

    /// The sd-tiny model in bf16 with a trainer whose oneDNN switch is faked as on (never really flipped in tests).
    private sealed class Bf16Task : IDisposable
    {
        private readonly StableDiffusion _model;
        private readonly ConceptLatents _latents;
        public TaskTrainer Trainer { get; }
        public Tensor ConvIn { get; }
        public List<string> Messages { get; } = [];
        public int Suspensions { get; private set; }

        public Bf16Task(int steps)
        {
            _model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny), precision: new ComputePrecision(ScalarType.BFloat16));
            long id = _model.Tokenizer.AddConceptToken("<v1>");
            _model.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
            _latents = ConceptLatents.Encode(_model.Vae, torch.rand(2, 3, 32, 32).Times(2).Minus(1), withFlips: false);
            var zeros = RunModelWeights(_model).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
            ConvIn = StateDictLoader.Targets(_model.Unet)["conv_in.weight"];
            var config = new TrainingConfig { Steps = steps, Rank = 2, Seed = 1, LearningRate = 1e-2 };
            Trainer = new TaskTrainer(_model, _latents, "<v1>", id, zeros, config, task: 1, oneDnnEnabled: () => true,
                suspendOneDnn: () => { Suspensions++; return new Restore(); }, info: Messages.Add);
        }

        public void Dispose()
        {
            Trainer.Dispose();
            _latents.Dispose();
            _model.Dispose();
        }
    }

    private static Dictionary<string, Tensor> RunModelWeights(StableDiffusion m) => LoraInjector.BaseWeights(m.CrossAttentionKeyValueTargets());

    [Fact]
    public void After_two_tasks_merged_weights_equal_the_low_rank_paths_evaluated_on_the_fly()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        // On the fly: task-1 delta as the frozen past, task-2 factors live in the layers.
        using var live = Load();
        var weights = RunModelWeights(live);
        var past = weights.ToDictionary(kv => kv.Key, kv => torch.randn(kv.Value.shape).Times(0.01f));
        var layers = LoraInjector.Inject(live.CrossAttentionKeyValueTargets(), 2, past);
        using (torch.no_grad())
            foreach (var l in layers) l.LoraA.copy_(torch.randn(l.LoraA.shape).Times(0.1f));
        var onTheFly = UnetOut(live);

        // Merged: the same deltas added into plain weights, as sampling does.
        using var merged = Load();
        using (torch.no_grad())
            foreach (var (name, w) in RunModelWeights(merged))
            {
                var layer = layers.Single(l => l.LayerName == name);
                w.AddInPlace(past[name].Plus(layer.CurrentDelta().detach()));
            }
        var mergedOut = UnetOut(merged);
        Fixture.AssertClose(mergedOut, onTheFly, 1e-5, "merged vs on-the-fly");
        Assert.True((mergedOut - UnetOut(Load())).abs().max().item<float>() > 1e-4f, "the deltas do change the output");
    }
}
