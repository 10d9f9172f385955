using ContinualDiffusion.Classification;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Classification;

public sealed class LearnerTests
{
    private static readonly ClassifyOptions Quick = new() { Epochs = 1, BatchSize = 16, Rank = 2, Lambda = 1.0, LearningRate = 1e-2 };

    private static LabeledImages Task1 => ClassifyTestData.Task1;
    private static LabeledImages Task2 => ClassifyTestData.Task2;

    [Fact]
    public void The_head_grows_and_keeps_the_earlier_rows()
    {
        using var head = Runtime.TensorOwnership.Build(() => new IncrementalHead(16));
        head.Grow(2);
        var before = head.Weight.detach().clone();
        head.Grow(3);
        Assert.Equal(5, head.Classes);
        Assert.True(head.Weight.detach().narrow(0, 0, 2).allclose(before, 0, 0));
        Assert.Equal(0, head.Bias.detach().count_nonzero().item<long>());
    }

    [Fact]
    public void Clora_folds_each_tasks_delta_into_the_frozen_past_and_penalises_only_from_task_2()
    {
        using var vit = ClassifyTestData.TinyVit();
        var initial = vit.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        using var learner = new LoraLearner(vit, Quick, penalised: true);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        var name = LoraLearner.LayerName(1);
        var afterTask1 = learner.Layers[1].CurrentDelta().detach().clone();
        Assert.True(afterTask1.abs().max().item<float>() > 0, "task 1 trained no delta");
        Assert.True(learner.PastDelta(name)!.allclose(afterTask1, 0, 0));

        // A new task starts from a zero delta: the old classes' logits do not move when it begins.
        var x = ImageBatches.Pixels(Task1, [0, 1, 30]);
        var logitsBefore = learner.Predict(x);
        learner.BeginTask([5, 2]);
        var logitsAfterBegin = learner.Predict(x).narrow(1, 0, 2);
        Assert.True(logitsAfterBegin.allclose(logitsBefore, 1e-5, 1e-6), "beginning a task changed the old classes' logits");
        var (_, extra) = learner.TrainForward(x);
        Assert.NotNull(extra);
        Assert.Equal(0f, extra!.item<float>()); // A starts at zero, so ‖|P| ⊙ AB‖² = 0 until it moves

        // The backbone's own weights never train.
        foreach (var (key, value) in vit.state_dict())
            if (initial.TryGetValue(key, out var old) && !key.StartsWith("head.", StringComparison.Ordinal))
                Assert.True(value.detach().allclose(old, 0, 0), $"{key} changed");
    }

    [Fact]
    public void Clora_penalty_is_lambda_times_the_masked_norm_of_the_new_delta()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new LoraLearner(vit, Quick with { Lambda = 3.0 }, penalised: true);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        ClassTaskTrainer.LearnTask(learner, [5, 2], Task2);
        var x = ImageBatches.Pixels(Task2, [0]);
        var (_, extra) = learner.TrainForward(x);
        // The adapters in place hold task 1's delta as their frozen past and task 2's as their current A·B.
        double expected = 3.0 * learner.Layers.Sum(l => l.PastDelta.abs().mul(l.CurrentDelta()).Squared().sum().item<float>());
        Assert.True(expected > 0);
        Assert.Equal(expected, extra!.item<float>(), expected * 1e-4);
    }

    [Fact]
    public void Lora_has_no_penalty()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new LoraLearner(vit, Quick, penalised: false);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        learner.BeginTask([5, 2]);
        var (_, extra) = learner.TrainForward(ImageBatches.Pixels(Task2, [0]));
        Assert.Null(extra);
    }

    [Theory]
    [InlineData("clora")]
    [InlineData("lora")]
    [InlineData("finetune")]
    [InlineData("ncm")]
    [InlineData("l2p")]
    [InlineData("coda-prompt")]
    public void A_restored_learner_predicts_exactly_as_the_trained_one(string method)
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = Create(method, vit);
        Assert.Equal(method, learner.Method);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        ClassTaskTrainer.LearnTask(learner, [5, 2], Task2);
        var state = learner.State();
        var x = ImageBatches.Pixels(Task2, [0, 1, 2, 40]);
        var expected = learner.Predict(x);

        using var fresh = ClassifyTestData.TinyVit(); // the same pretrained weights
        using var restored = Create(method, fresh);
        restored.Restore([[1, 8], [5, 2]], state);
        Assert.Equal([1, 8, 5, 2], restored.Classes);
        var got = restored.Predict(x);
        Assert.True(got.allclose(expected, 1e-5, 1e-6), $"{method}: max difference {got.sub(expected).abs().max().item<float>():E2}");
    }

    [Fact]
    public void Ncm_scores_are_cosines_to_the_normalised_class_means()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new NcmLearner(vit, Quick);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        var all = ImageBatches.Pixels(Task1, [.. Enumerable.Range(0, Task1.Count)]);
        var features = vit.Features(all);
        var labels = Task1.Labels;
        var means = torch.stack(new[] { 1, 8 }.Select(c =>
            features.index_select(0, torch.tensor(Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).Select(i => (long)i).ToArray())).mean([0])).ToArray());
        var x = ImageBatches.Pixels(Task1, [3, 30]);
        var expected = nn.functional.normalize(vit.Features(x), dim: 1).matmul(nn.functional.normalize(means, dim: 1).t());
        Assert.True(learner.Predict(x).allclose(expected, 1e-5, 1e-6));
    }

    [Fact]
    public void Finetune_learns_an_easy_pair_and_a_task_with_a_foreign_class_is_refused()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new FinetuneLearner(vit, Quick with { Epochs = 3, LearningRate = 3e-3 });
        var result = ClassTaskTrainer.LearnTask(learner, [1, 8], ClassifyTestData.Fashion([1, 8], 150));
        Assert.Equal(3 * (300 / 16 + 1), result.Steps);
        var accuracy = ClassifyEvaluation.AccuracyPerTask(learner, ClassifyTestData.Fashion([1, 8], 100, test: true), [[1, 8]]);
        Assert.True(accuracy[0] > 0.9, $"trouser vs bag: {accuracy[0]:P1}"); // chance is 50%

        var e = Assert.Throws<InputException>(() => ClassTaskTrainer.LearnTask(learner, [5, 2], ClassifyTestData.Fashion([5, 3], 4)));
        Assert.Contains("class 3", e.Message);
        e = Assert.Throws<InputException>(() => learner.BeginTask([8, 0]));
        Assert.Contains("class 8 was already learned", e.Message);
    }

    [Fact]
    public void A_one_class_task_trains_against_the_classes_seen_so_far()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new LoraLearner(vit, Quick, penalised: true);
        var first = ClassTaskTrainer.LearnTask(learner, [1], ClassifyTestData.Fashion([1], 16));
        Assert.Equal(0.0, first.FinalLoss); // one class and nothing before it: the loss has nothing to separate
        var second = ClassTaskTrainer.LearnTask(learner, [8], ClassifyTestData.Fashion([8], 16));
        Assert.Equal(0, learner.TrainingOffset); // over both classes, not the new one alone
        Assert.True(second.FinalLoss > 0, "a one-class task after another learned nothing");
    }

    private static ClassIncrementalLearner Create(string method, VisionTransformer vit) => ClassifyMethods.Create(method, vit, Quick);
}
