namespace ContinualDiffusion.Classification.Benchmark;

/// The class-incremental comparison: every method on the same backbone and the same class orders, `Tasks` tasks
/// over the ten classes of `Dataset` (5 tasks of 2 classes, or 10 of 1), one class order per seed.
public sealed record ClassifyBenchmarkOptions
{
    public required string OutDir { get; init; }
    public required string BackbonePath { get; init; }
    public IReadOnlyList<string> Methods { get; init; } = ["clora", "lora", "finetune", "ncm", "joint"];
    public IReadOnlyList<long> Seeds { get; init; } = [0, 1, 2];
    public int Tasks { get; init; } = 5;

    /// The continual classes: "mnist" (the digits, default) or "fashion" (<see cref="ClassifyDatasets"/>).
    public string Dataset { get; init; } = "mnist";

    /// Training options every method starts from; per-method values from <see cref="ClassifyDefaults.ForMethod"/>.
    public ClassifyOptions Training { get; init; } = new();

    /// Per-method overrides of `Training` (the benchmark's --lr and friends), applied after the method defaults.
    public Func<string, ClassifyOptions, ClassifyOptions>? Override { get; init; }

    /// Where the MNIST tarball is (default: the cache, downloaded on first use).
    public string? MnistTarball { get; init; }

    /// The ten classes split into `Tasks` tasks in seed `seed`'s class order: a shuffle of 0..9 by the seed.
    public static IReadOnlyList<IReadOnlyList<int>> TaskClasses(long seed, int tasks)
    {
        if (tasks < 1 || 10 % tasks != 0) throw new InputException($"--tasks {tasks}: must divide the 10 classes (1, 2, 5 or 10)");
        var order = Enumerable.Range(0, 10).ToArray();
        new Random(unchecked((int)seed * 7 + 1)).Shuffle(order);
        int per = 10 / tasks;
        return [.. Enumerable.Range(0, tasks).Select(t => (IReadOnlyList<int>)order[(t * per)..((t + 1) * per)])];
    }
}
