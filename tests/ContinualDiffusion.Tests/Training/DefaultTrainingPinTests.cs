using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// Pins what a task's steps compute with the default options, so that a training option added later (gradient
/// accumulation, schedules, Min-SNR, offset noise: all off by default) cannot change default training unnoticed. The
/// literals were printed by this same test run against commit ecba1f7, before those options existed; the test process
/// runs with oneDNN off (Support/TestProcessSetup), so they are exact on this CPU build of libtorch. Tolerance: exact
/// for the losses (one float each), 1e-9 relative for the sums.
public class DefaultTrainingPinTests
{
    [Fact]
    public void Three_default_clora_steps_with_a_past_task_compute_what_they_always_did()
    {
        using var scope = torch.NewDisposeScope();
        using var m = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        long id = m.Tokenizer.AddConceptToken("<v2>");
        using (var init = new Generator(11)) m.TextEncoder.ResizeTokenEmbeddings((int)id + 1, init);
        using var images = new Generator(12);
        using var latents = ConceptLatents.Encode(m.Vae, torch.rand(3, 3, 32, 32, generator: images).Times(2).Minus(1), withFlips: true);
        var past = LoraInjector.BaseWeights(m.CrossAttentionKeyValueTargets())
            .ToDictionary(kv => kv.Key, kv => torch.randn(kv.Value.shape, generator: images).Times(0.01));
        var config = new TrainingConfig { Steps = 3, Rank = 2, Seed = 7, Lambda = 10 };
        using var trainer = new TaskTrainer(m, latents, "<v2>", id, past, config, task: 2);
        var losses = Enumerable.Range(0, 3).Select(_ => trainer.TrainStep().Loss).ToArray();
        double token = trainer.TokenEmbedding.sum().item<float>();
        double factors = trainer.Layers.SelectMany(l => l.NamedTrainableParameters()).Sum(p => (double)p.Value.abs().sum().item<float>());

        double[] expectedLosses = [2.078339099884033, 2.025252103805542, 2.1252803802490234];
        (double Token, double Factors) expected = (0.18385553359985352, 126.25730204582214);
        Assert.True(losses.SequenceEqual(expectedLosses), $"losses {string.Join(", ", losses.Select(l => l.ToString("R")))}");
        Assert.True(Math.Abs(token - expected.Token) <= 1e-9 * Math.Abs(expected.Token) && Math.Abs(factors - expected.Factors) <= 1e-9 * Math.Abs(expected.Factors),
            $"token sum {token:R}, factors |sum| {factors:R}");
    }
}
