namespace ContinualDiffusion.Evaluation.Reporting;

/// Everything one benchmark produced, as plain data: the settings it ran with, the concepts it learned (in task
/// order) and one entry per (method, seed) run. This is what results.json holds and what reports are made from.
public sealed record BenchmarkResults
{
    public const int CurrentFormatVersion = 1;

    public int FormatVersion { get; init; } = CurrentFormatVersion;

    /// Heading of the markdown report.
    public string Title { get; init; } = "Continual customization benchmark";

    /// Free-form settings shown in the report, in insertion order (images per concept, samples per concept, steps,
    /// seeds, λ values, classifier test accuracy, base model, machine, wall times...). Values are preformatted
    /// text so the file round-trips exactly whatever the caller chose to record.
    public Dictionary<string, string> Config { get; init; } = [];

    /// One label per task, e.g. "<v1> = pullover"; concept i is learned in task i.
    public required List<string> ConceptNames { get; init; }

    /// The classifier's accuracy on real test images of each concept's class (concept name → accuracy): the ceiling
    /// any method can reach. Empty in results written before it was measured.
    public Dictionary<string, double> Ceiling { get; init; } = [];

    public required List<MethodRun> Runs { get; init; }
}

/// One method trained on all tasks with one seed, and scored after every task.
public sealed record MethodRun
{
    /// Method name as on the command line ("clora", "lora", "independent", or a sweep label like "clora-l1e6").
    public required string Method { get; init; }

    /// The method's regularisation weight λ (NaN where it has none).
    public required double Lambda { get; init; }

    public required long Seed { get; init; }

    /// R[t][i]: fraction of concept i's samples, generated after task t, that the classifier assigns to concept i's
    /// class (t, i zero-based). Row t needs at least t + 1 entries; entries with i > t are ignored.
    public required double[][] R { get; init; }

    /// Mmd[t][i]: MMD² between concept i's samples after task t and real test images of its class, in the
    /// classifier's feature space (lower is better). Same shape rules as R.
    public required double[][] Mmd { get; init; }

    /// Kid[t][i]: KID (unbiased, cubic polynomial kernel) between the same samples and real images, same feature
    /// space and shape rules as Mmd; null in results written before KID was measured.
    public double[][]? Kid { get; init; }

    /// Accuracy of the base model's own prompts (prompt → fraction classified as a class the prompt accepts) before any
    /// customization and after the last task. Empty when base classes were not scored.
    public Dictionary<string, double> BaseClassAccuracyBefore { get; init; } = [];
    public Dictionary<string, double> BaseClassAccuracyAfter { get; init; } = [];

    /// Wall time spent training all tasks, and sampling for the evaluation.
    public double TrainSeconds { get; init; }
    public double SampleSeconds { get; init; }

    /// Per task, mean over tasks: values the task trained and stored (adapter layers and the token row) and the
    /// adapter file's size. The UNet's parameter count, for the share. Null for runs recorded before they were measured.
    public double? TrainedValuesPerTask { get; init; }
    public double? AdapterBytesPerTask { get; init; }
    public long? UnetParameters { get; init; }

    internal string Label => $"run '{Method}' seed {Seed}";
}
