using System.Diagnostics;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// Trains one task of a class-incremental learner: `Epochs` passes over the task's images in shuffled batches,
/// cross-entropy over the task's own classes plus the method's extra loss, AdamW with linear warm-up and cosine
/// decay; then the learner's EndTask.
public static class ClassTaskTrainer
{
    public sealed record Result(int Steps, double FinalLoss, double Seconds);

    /// Begins the task with `classes`, trains it on `train` (images of those classes only) and ends it.
    public static Result LearnTask(ClassIncrementalLearner learner, IReadOnlyList<int> classes, LabeledImages train,
        Action<int, int, double>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(learner);
        ArgumentNullException.ThrowIfNull(train);
        var stray = train.Labels.FirstOrDefault(l => !classes.Contains(l), -1);
        if (stray >= 0) throw new InputException($"the task's images include class {stray}, which is not one of its classes ({string.Join(", ", classes)})");
        foreach (var c in classes)
            if (!train.Labels.Contains(c)) throw new InputException($"class {c} ({train.ClassNames[c]}) has no training image in this task");

        var options = learner.Options;
        var clock = Stopwatch.StartNew();
        using (var g = new Generator(unchecked((ulong)(options.Seed * 1009 + learner.Tasks + 1))))
            learner.BeginTask(classes, g);

        int steps = 0;
        double lastLoss = double.NaN;
        if (learner.Trains)
        {
            var groups = learner.TrainableGroups().Select(g => new AdamW.Group(g.Name, g.Parameters, g.LearningRate, options.WeightDecay)).ToList();
            using var optimizer = new AdamW(groups);
            int perEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
            int total = perEpoch * options.Epochs;
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                foreach (var (pixels, indices) in ImageBatches.Batches(train, options.BatchSize, options.Seed * 7919 + learner.Tasks * 101 + epoch))
                {
                    using var scope = torch.NewDisposeScope();
                    using var _ = pixels;
                    cancel.ThrowIfCancellationRequested();
                    var targets = torch.tensor(indices.Select(i => (long)(learner.ColumnOf(train.Labels[i]) - learner.TrainingOffset)).ToArray());
                    optimizer.ZeroGrad();
                    var (logits, extra) = learner.TrainForward(pixels);
                    var loss = nn.functional.cross_entropy(logits, targets);
                    if (extra is not null) loss = loss.Plus(extra);
                    loss.backward();
                    steps++;
                    optimizer.Step(LearningRateSchedule.Scale(steps, total));
                    lastLoss = loss.item<float>();
                    if (!double.IsFinite(lastLoss))
                        throw new TrainingDivergedException($"{learner.Method}: the loss became {lastLoss} at step {steps} of task {learner.Tasks}; nothing was written (try a lower --lr or --lambda)");
                    progress?.Invoke(steps, total, lastLoss);
                }
            }
        }
        learner.EndTask(() => Columns(learner, train, options.BatchSize));
        return new Result(steps, lastLoss, clock.Elapsed.TotalSeconds);
    }

    /// The task's images in batches with their head columns (what EndTask may compute statistics from).
    private static IEnumerable<(Tensor Images, Tensor Columns)> Columns(ClassIncrementalLearner learner, LabeledImages train, int batchSize)
    {
        foreach (var (pixels, indices) in ImageBatches.Batches(train, batchSize))
        {
            using var columns = torch.tensor(indices.Select(i => (long)learner.ColumnOf(train.Labels[i])).ToArray());
            using (pixels) yield return (pixels, columns);
        }
    }
}
