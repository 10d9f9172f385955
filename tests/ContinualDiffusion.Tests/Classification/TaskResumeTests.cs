using ContinualDiffusion.Classification;
using ContinualDiffusion.Classification.Methods;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Classification;

/// A task interrupted after a checkpoint and resumed from it ends with exactly the values of an uninterrupted one,
/// for every method that trains; a checkpoint that does not fit the task is refused naming what is wrong.
public sealed class TaskResumeTests : IDisposable
{
    private static readonly ClassifyOptions Quick = new() { Epochs = 2, BatchSize = 16, Rank = 2, Lambda = 1.0, LearningRate = 1e-2 };
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-classify-resume-").FullName;

    [Theory]
    [InlineData("clora")]
    [InlineData("lora")]
    [InlineData("finetune")]
    [InlineData("l2p")]
    [InlineData("coda-prompt")]
    public void A_resumed_second_task_ends_bit_for_bit_where_an_uninterrupted_one_does(string method)
    {
        Dictionary<string, Tensor> afterTask1;
        using (var vit = ClassifyTestData.TinyVit())
        using (var first = ClassifyMethods.Create(method, vit, Quick))
        {
            ClassTaskTrainer.LearnTask(first, [1, 8], ClassifyTestData.Task1);
            afterTask1 = first.State();
        }

        var expected = SecondTask(method, afterTask1);

        // Interrupted after step 5 of 6 (48 images in batches of 16, two epochs), with checkpoints every 2 steps: the
        // last one is step 4's, so the resumed run redoes step 5 and does step 6.
        var checkpoint = new ClassifyTaskCheckpoint(Path.Combine(_dir, $"{method}.safetensors"), "test");
        using (var cancel = new CancellationTokenSource())
            Assert.ThrowsAny<OperationCanceledException>(() => SecondTask(method, afterTask1,
                new ClassTaskTrainer.Checkpointing(2, checkpoint.Save), (step, _, _) => { if (step == 5) cancel.Cancel(); }, cancel.Token));
        var saved = checkpoint.Load(2);
        Assert.Equal(4L, saved["step"].item<long>());
        var stepsRun = new List<int>();
        var resumed = SecondTask(method, afterTask1, ResumeFrom(saved), (step, _, _) => stepsRun.Add(step));
        Assert.Equal([5, 6], stepsRun); // it continued; a restart would also end equal, so this is what shows the resume

        Assert.Equal(expected.Keys.Order(), resumed.Keys.Order());
        foreach (var (key, value) in expected)
        {
            Assert.Equal(value.shape, resumed[key].shape);
            if (!value.eq(resumed[key]).all().item<bool>())
                Assert.Fail($"{method}: '{key}' differs after resuming (max {value.to(ScalarType.Float64).sub(resumed[key].to(ScalarType.Float64)).abs().max().item<double>():E2})");
        }
    }

    [Fact]
    public void A_checkpoint_that_does_not_fit_the_task_is_refused_naming_the_key()
    {
        Dictionary<string, Tensor> afterTask1;
        using (var vit = ClassifyTestData.TinyVit())
        using (var first = ClassifyMethods.Create("lora", vit, Quick))
        {
            ClassTaskTrainer.LearnTask(first, [1, 8], ClassifyTestData.Task1);
            afterTask1 = first.State();
        }
        var checkpoint = new ClassifyTaskCheckpoint(Path.Combine(_dir, "lora.safetensors"), "test");
        using (var cancel = new CancellationTokenSource())
            Assert.ThrowsAny<OperationCanceledException>(() => SecondTask("lora", afterTask1,
                new ClassTaskTrainer.Checkpointing(1, checkpoint.Save), (step, _, _) => { if (step == 2) cancel.Cancel(); }, cancel.Token));
        var good = checkpoint.Load(2);

        void Refused(Dictionary<string, Tensor> state, params string[] expected)
        {
            var e = Assert.Throws<InputException>(() => SecondTask("lora", afterTask1, ResumeFrom(state)));
            foreach (var x in expected) Assert.Contains(x, e.Message);
            Assert.Contains("the checkpoint", e.Message);
        }
        Refused(new(good) { ["step"] = torch.tensor(6L) }, "key 'step' is 6", "steps 1..6");
        Refused(new(good) { ["step"] = torch.tensor(2.5) }, "key 'step'");
        Refused(good.Where(kv => kv.Key != "trained.head.1").ToDictionary(), "other trained parameters");
        Refused(new(good) { ["trained.head.0"] = torch.zeros(3, 3) }, "'trained.head.0'", "expected [");
        Refused(new(good) { ["trained.lora.0"] = Runtime.OwnedScalars.Full(good["trained.lora.0"].shape, double.NaN) }, "'trained.lora.0'", "NaN");
        Refused(new(good) { ["trained.extra.0"] = torch.zeros(1) }, "'trained.extra.0' is not one");

        var wrongIdentity = new ClassifyTaskCheckpoint(checkpoint.Path, "another task");
        var e = Assert.Throws<InputException>(() => wrongIdentity.Load(2));
        Assert.Contains("was made with another method, backbone, options or images", e.Message);
    }

    /// Task 2 (sandal, pullover) on a learner restored from `afterTask1`; its state at the end.
    private static Dictionary<string, Tensor> SecondTask(string method, Dictionary<string, Tensor> afterTask1, ClassTaskTrainer.Checkpointing? checkpointing = null,
        Action<int, int, double>? progress = null, CancellationToken cancel = default)
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = ClassifyMethods.Create(method, vit, Quick);
        learner.Restore([[1, 8]], afterTask1);
        ClassTaskTrainer.LearnTask(learner, [5, 2], ClassifyTestData.Task2, progress, cancel, checkpointing);
        return learner.State();
    }

    private static ClassTaskTrainer.Checkpointing ResumeFrom(Dictionary<string, Tensor> checkpoint) => new(0, null, checkpoint);

    public void Dispose() => Directory.Delete(_dir, true);
}
