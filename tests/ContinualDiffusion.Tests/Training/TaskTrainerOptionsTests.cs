using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// `cdiff train`'s options inside TaskTrainer on the sd-tiny model: gradient accumulation, learning-rate schedules,
/// Min-SNR, offset noise, captions.
public class TaskTrainerOptionsTests
{
    private sealed class TinyTask : IDisposable
    {
        private readonly StableDiffusion _model;
        private readonly ConceptLatents _latents;
        public TaskTrainer Trainer { get; }

        public StableDiffusion Model => _model;

        public TinyTask(TrainingConfig config, bool gradientCheckpointing = false, IReadOnlyList<string?>? captions = null, bool flips = false,
            IReadOnlyList<ImageGroup>? buckets = null)
        {
            _model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
            _model.Unet.GradientCheckpointing = gradientCheckpointing;
            long id = _model.Tokenizer.AddConceptToken("<v1>");
            using (var init = new Generator(5)) _model.TextEncoder.ResizeTokenEmbeddings((int)id + 1, init);
            using var images = new Generator(6); // the tensors below belong to the calling test's scope
            _latents = buckets is null
                ? ConceptLatents.Encode(_model.Vae, torch.rand(4, 3, 32, 32, generator: images).Times(2).Minus(1), withFlips: flips)
                : ConceptLatents.Encode(_model.Vae, buckets, buckets.Sum(b => b.Indices.Count), withFlips: flips);
            var zeros = LoraInjector.BaseWeights(_model.CrossAttentionKeyValueTargets()).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
            Trainer = new TaskTrainer(_model, _latents, "<v1>", id, zeros, config.Validated("test"), task: 1, captions: captions);
        }

        public List<Tensor> Trainable => [.. Trainer.Layers.SelectMany(l => l.NamedTrainableParameters()).Select(p => (Tensor)p.Value), Trainer.TokenEmbedding];

        /// Clones of the trainable values' gradients (zeros where there is none).
        public List<Tensor> Gradients() => Trainable.Select(p => p.grad is { } g ? g.clone() : torch.zeros_like(p)).ToList();

        public void ZeroGradients()
        {
            using var scope = torch.NewDisposeScope();
            foreach (var p in Trainable) p.grad?.zero_();
        }

        public void Dispose()
        {
            Trainer.Dispose();
            _latents.Dispose();
            _model.Dispose();
        }
    }

    /// With aspect buckets every batch holds latents of one bucket (mirror images with their originals), every image and
    /// mirror image is drawn, and a step trains on them.
    [Fact]
    public void With_aspect_buckets_a_batch_is_of_one_bucket_and_every_image_is_drawn()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(4);
        ImageGroup[] groups =
        [
            new(24, 40, [1, 3], torch.rand(2, 3, 40, 24, generator: g).Times(2).Minus(1)),
            new(40, 24, [0, 2], torch.rand(2, 3, 24, 40, generator: g).Times(2).Minus(1)),
        ];
        using var task = new TinyTask(Base with { BatchSize = 3 }, flips: true, buckets: groups);
        var seen = new HashSet<long>();
        for (int step = 1; step <= 40; step++)
        {
            using var stepScope = torch.NewDisposeScope();
            var batch = task.Trainer.FirstBatchOf(step);
            Assert.Single(batch.Indices.Select(i => i % 4 is 1 or 3).Distinct()); // images 1 and 3 (and 5, 7, their mirrors) are the tall bucket
            seen.UnionWith(batch.Indices);
        }
        Assert.Equal(8, seen.Count);
        Assert.True(double.IsFinite(task.Trainer.ForwardBackward(1).Loss));
    }

    private static readonly TrainingConfig Base = new() { Steps = 4, Rank = 2, Seed = 1, LearningRate = 1e-2, MaxGradNorm = 1e9 };

    /// A step of n batches leaves on the parameters the sum of each batch's gradient of loss / n (the mean's gradient),
    /// its batches differ, and its first batch is the one a step without accumulation draws.
    [Fact]
    public void An_accumulated_step_has_the_mean_of_its_batches_gradients_and_its_first_batch_is_the_unaccumulated_one()
    {
        using var scope = torch.NewDisposeScope();
        using var accumulated = new TinyTask(Base with { GradientAccumulationSteps = 2 });
        var step = accumulated.Trainer.ForwardBackward(1);
        Assert.True(double.IsFinite(step.Loss) && double.IsFinite(step.GradNorm));
        var total = accumulated.Gradients();
        var parts = new List<List<Tensor>>();
        var losses = new List<double>();
        for (int k = 0; k < 2; k++)
        {
            accumulated.ZeroGradients();
            losses.Add(accumulated.Trainer.BatchForwardBackward(1, k, 2).Loss);
            parts.Add(accumulated.Gradients());
        }
        Assert.Equal((losses[0] + losses[1]) / 2, step.Loss, 1e-9);
        Assert.NotEqual(losses[0], losses[1]); // two different batches
        Assert.Contains(total, g => g.abs().max().item<float>() > 0);
        for (int i = 0; i < total.Count; i++) Fixture.AssertClose(total[i], parts[0][i].Plus(parts[1][i]), 1e-6, $"trainable {i}");

        using var single = new TinyTask(Base);
        var one = single.Trainer.ForwardBackward(1);
        Assert.Equal(losses[0], one.Loss, 1e-9);
        var g1 = single.Gradients();
        for (int i = 0; i < g1.Count; i++) Fixture.AssertClose(g1[i], parts[0][i].Times(2), 1e-6, $"trainable {i} without accumulation");
    }

    /// With gradient checkpointing (each batch's backward recomputes its blocks and hands its gradients over) an
    /// accumulated step's gradients are the same as without it.
    [Fact]
    public void Accumulation_with_gradient_checkpointing_gives_the_same_gradients()
    {
        using var scope = torch.NewDisposeScope();
        List<Tensor> Gradients(bool checkpointing)
        {
            using var task = new TinyTask(Base with { GradientAccumulationSteps = 2 }, checkpointing);
            int before = ActivationCheckpoint.BackwardCallsOnThisThread;
            task.Trainer.ForwardBackward(1);
            Assert.Equal(checkpointing, ActivationCheckpoint.BackwardCallsOnThisThread > before);
            return task.Gradients();
        }
        var plain = Gradients(false);
        var checkpointed = Gradients(true);
        for (int i = 0; i < plain.Count; i++) Fixture.AssertClose(checkpointed[i], plain[i], 1e-5, $"trainable {i}");
    }

    /// Min-SNR weighting and offset noise change a step's loss; a noise offset of 0 is no offset (the same batch and
    /// loss, bit for bit, as a config without it).
    [Fact]
    public void Min_snr_and_noise_offset_change_the_loss_and_an_offset_of_zero_is_none()
    {
        using var scope = torch.NewDisposeScope();
        double Loss(TrainingConfig c)
        {
            using var task = new TinyTask(c);
            return task.Trainer.ForwardBackward(1).Loss;
        }
        double plain = Loss(Base);
        Assert.Equal(plain, Loss(Base with { NoiseOffset = 0 }));
        double offset = Loss(Base with { NoiseOffset = 0.1 }), snr = Loss(Base with { SnrGamma = 5 });
        Assert.True(double.IsFinite(offset) && double.IsFinite(snr));
        Assert.NotEqual(plain, offset);
        Assert.NotEqual(plain, snr);
    }

    /// Captions replace the prompt template of the images that have one: a caption equal to the template trains
    /// exactly as without captions (the draws are the same), another caption changes the loss.
    [Fact]
    public void Captions_replace_the_template_of_their_images()
    {
        using var scope = torch.NewDisposeScope();
        double Loss(IReadOnlyList<string?>? captions)
        {
            using var task = new TinyTask(Base with { BatchSize = 4 }, captions: captions);
            return task.Trainer.ForwardBackward(1).Loss;
        }
        double plain = Loss(null);
        Assert.Equal(plain, Loss(["a photo of {}", "a photo of {}", null, "a photo of {}"]));
        const string other = "a watercolour painting of {} at night";
        Assert.NotEqual(plain, Loss([other, other, other, other]));
    }

    /// Each row of a batch gets the caption of the image it was drawn from (its flipped copy too), or a template.
    [Fact]
    public void Every_row_of_a_batch_has_its_own_images_caption()
    {
        using var scope = torch.NewDisposeScope();
        string?[] captions = ["a red {}", null, "a {} in the snow", "a watercolour of {}"];
        using var task = new TinyTask(Base with { BatchSize = 8 }, captions: captions, flips: true);
        var seen = new HashSet<long>();
        for (int step = 1; step <= 3; step++)
        {
            var batch = task.Trainer.FirstBatchOf(step);
            for (int j = 0; j < batch.Indices.Length; j++)
            {
                seen.Add(batch.Indices[j]);
                var expected = task.Model.Tokenize([(captions[batch.Indices[j] % 4] ?? "a photo of {}").Replace("{}", "<v1>")]);
                Assert.True(batch.TokenIds[j].equal(expected[0]).all().item<bool>(), $"step {step} row {j} (latent {batch.Indices[j]})");
            }
        }
        Assert.Contains(seen, i => i >= 4); // flipped copies were drawn and mapped back
    }

    /// With warm-up the first step's rate is 0 (diffusers' LambdaLR at step 0): nothing moves, not even by weight
    /// decay; the second step, at half the rate, moves the adapters and the token.
    [Fact]
    public void With_warm_up_the_first_step_moves_nothing_and_the_second_does()
    {
        using var scope = torch.NewDisposeScope();
        using var task = new TinyTask(Base with { LrScheduler = "linear", LrWarmupSteps = 2 });
        var before = task.Trainable.Select(p => p.clone()).ToList();
        Assert.True(task.Trainer.TrainStep().Applied);
        Assert.All(task.Trainable.Zip(before), p => Assert.True(p.First.equal(p.Second).all().item<bool>()));
        task.Trainer.TrainStep();
        Assert.False(task.Trainer.TokenEmbedding.equal(before[^1]).all().item<bool>());
        Assert.Contains(task.Trainable.Zip(before).SkipLast(1), p => !p.First.equal(p.Second).all().item<bool>());
    }
}
