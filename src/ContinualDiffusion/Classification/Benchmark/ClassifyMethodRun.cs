using System.Text.Json.Serialization;

namespace ContinualDiffusion.Classification.Benchmark;

/// One method on one seed: the task classes, the accuracy matrix R (R[t][i]: accuracy on task i's classes after
/// task t; for `joint`, one row after its single task, grouped by the same tasks) and what training cost.
public sealed record ClassifyMethodRun
{
    public required string Method { get; init; }
    public required long Seed { get; init; }
    public required IReadOnlyList<IReadOnlyList<int>> TaskClasses { get; init; }
    public required double[][] R { get; init; }
    public required double[] SecondsPerTask { get; init; }
    public required long TrainedValuesPerTask { get; init; }

    /// Final average accuracy over the tasks' classes (mean of the last row).
    [JsonIgnore] public double FinalAverage => R[^1].Average();

    /// Average forgetting (null for joint, which is not continual).
    [JsonIgnore] public double? Forgetting => Method == "joint" ? null : Evaluation.ContinualMetrics.Forgetting(R);
}
