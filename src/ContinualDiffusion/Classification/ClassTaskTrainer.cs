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

    /// Resumable training: every `Every` steps (0: never; never after the last step) `Save` receives the state of
    /// the task in progress (<see cref="TrainingState"/>: the trained parameters, the optimiser's moments, the step),
    /// to write before the call returns; `ResumeFrom`, such a state saved by an interrupted run of the same task with
    /// the same learner, options and images, continues it. Nothing random needs carrying: a task's initial values
    /// come from a generator seeded by the task, and each epoch's batch order from a seed of its own, so a resumed
    /// task ends with the values an uninterrupted one ends with.
    public sealed record Checkpointing(int Every, Action<IReadOnlyDictionary<string, Tensor>>? Save, IReadOnlyDictionary<string, Tensor>? ResumeFrom = null,
        string Source = "the checkpoint");

    /// Begins the task with `classes`, trains it on `train` (images of those classes only) and ends it.
    public static Result LearnTask(ClassIncrementalLearner learner, IReadOnlyList<int> classes, LabeledImages train,
        Action<int, int, double>? progress = null, CancellationToken cancel = default, Checkpointing? checkpointing = null)
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
            int resumed = checkpointing?.ResumeFrom is { } saved ? RestoreTrainingState(groups, optimizer, saved, total, checkpointing.Source) : 0;
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                foreach (var indices in ImageBatches.BatchIndices(train.Count, options.BatchSize, options.Seed * 7919 + learner.Tasks * 101 + epoch))
                {
                    if (steps < resumed) { steps++; continue; } // trained before the interruption
                    using var scope = torch.NewDisposeScope();
                    cancel.ThrowIfCancellationRequested();
                    var pixels = ImageBatches.Pixels(train, indices);
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
                    if (checkpointing is { Every: > 0, Save: { } save } && steps % checkpointing.Every == 0 && steps < total)
                        save(TrainingState(groups, optimizer, steps));
                }
            }
        }
        learner.EndTask(() => Columns(learner, train, options.BatchSize));
        return new Result(steps, lastLoss, clock.Elapsed.TotalSeconds);
    }

    /// The state of a task in progress, by name: `trained.<group>.<index>` for each parameter the optimiser trains,
    /// its moments (`optimizer.*`) and `step`. The parameters are the learner's own tensors (valid until the next
    /// step); the counters are made in the caller's dispose scope.
    public static Dictionary<string, Tensor> TrainingState(IReadOnlyList<AdamW.Group> groups, AdamW optimizer, int step)
    {
        var d = optimizer.StateTensors();
        foreach (var g in groups)
            for (int i = 0; i < g.Parameters.Count; i++) d[$"trained.{g.Name}.{i}"] = g.Parameters[i];
        d["step"] = torch.tensor((long)step);
        return d;
    }

    /// Loads <see cref="TrainingState"/> into the task just begun; returns the step it was saved at. Every key must be
    /// there with the shape of what it restores and hold finite numbers (anything else is a damaged file).
    private static int RestoreTrainingState(IReadOnlyList<AdamW.Group> groups, AdamW optimizer, IReadOnlyDictionary<string, Tensor> d, int total, string source)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        foreach (var (key, t) in d)
            if (t.is_floating_point() && !t.isfinite().all().item<bool>())
                throw new InputException($"{source}: key '{key}' holds NaN or infinite values");
        if (!d.TryGetValue("step", out var stepTensor) || stepTensor.numel() != 1 || stepTensor.is_floating_point())
            throw new InputException($"{source}: key 'step' must hold one integer");
        long step = stepTensor.item<long>();
        if (step < 1 || step >= total) throw new InputException($"{source}: key 'step' is {step}, but this task trains steps 1..{total}");
        var expected = groups.Sum(g => g.Parameters.Count);
        var extra = d.Keys.FirstOrDefault(k => k.StartsWith("trained.", StringComparison.Ordinal) && !groups.Any(g => k.StartsWith($"trained.{g.Name}.", StringComparison.Ordinal)));
        if (extra is not null || d.Keys.Count(k => k.StartsWith("trained.", StringComparison.Ordinal)) != expected)
            throw new InputException($"{source}: holds other trained parameters than this method trains ({expected} expected{(extra is null ? "" : $"; '{extra}' is not one")})");
        foreach (var g in groups)
            for (int i = 0; i < g.Parameters.Count; i++)
            {
                var key = $"trained.{g.Name}.{i}";
                var p = g.Parameters[i];
                if (!d.TryGetValue(key, out var t)) throw new InputException($"{source}: missing key '{key}'");
                if (!t.shape.SequenceEqual(p.shape) || !t.is_floating_point())
                    throw new InputException($"{source}: key '{key}' has shape [{string.Join(", ", t.shape)}] {t.dtype}, expected [{string.Join(", ", p.shape)}] floating point");
                p.copy_(t);
            }
        optimizer.LoadStateTensors(d, source);
        return (int)step;
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
