namespace ContinualDiffusion.Evaluation.Reporting;

/// One method's results aggregated over its seeds. Scalars are mean ± std over seeds of the per-run value;
/// MeanR and MeanMmd are the element-wise means over seeds (row t has t + 1 entries).
public sealed record MethodSummary
{
    public required string Method { get; init; }
    public required double Lambda { get; init; }
    public required IReadOnlyList<long> Seeds { get; init; }

    /// ContinualMetrics.FinalAverage of R: mean accuracy of all concepts after the last task.
    public required MeanStd FinalAverage { get; init; }

    /// ContinualMetrics.Forgetting of R: mean drop from a concept's best accuracy to its final one.
    public required MeanStd Forgetting { get; init; }

    /// Mean over concepts of MMD² after the last task.
    public required MeanStd FinalMmd { get; init; }

    /// ContinualMetrics.Increase of the MMD² matrix: mean rise from a concept's lowest MMD² to its final one.
    public required MeanStd MmdIncrease { get; init; }

    /// The same two for KID; null for results written before KID was measured.
    public required MeanStd? FinalKid { get; init; }
    public required MeanStd? KidIncrease { get; init; }

    /// Mean over base classes of their accuracy before customization / after the last task, and the drop
    /// (before − after) per run. Null when the base classes were not scored.
    public required MeanStd? BaseAccuracyBefore { get; init; }
    public required MeanStd? BaseAccuracyAfter { get; init; }
    public required MeanStd? BaseAccuracyDrop { get; init; }

    public required MeanStd TrainSeconds { get; init; }
    /// Mean over the runs that recorded them (null when none did): values trained per task, adapter bytes per task,
    /// and their share of the UNet's parameters / of the UNet in float32.
    public double? TrainedValuesPerTask { get; init; }
    public double? AdapterBytesPerTask { get; init; }
    public long? UnetParameters { get; init; }
    public int Tasks { get; init; }
    public required MeanStd SampleSeconds { get; init; }

    public required double[][] MeanR { get; init; }
    public required double[][] MeanMmd { get; init; }
}
