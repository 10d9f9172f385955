using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation.Reporting;
using TorchSharp;

namespace ContinualDiffusion.Classification.Benchmark;

/// Runs the class-incremental comparison: for each seed and method, a fresh copy of the pretrained backbone learns
/// the seed's tasks one after another (joint: all ten classes in one task), and after every task every class so
/// far is scored on the continual set's test split (the MNIST digits' by default) with no task id. Each finished (method, seed) is cached in
/// `<out>/runs/` under a fingerprint of everything that affects it, so an interrupted benchmark resumes.
public static class ClassifyBenchmark
{
    public static IReadOnlyList<ClassifyMethodRun> Run(ClassifyBenchmarkOptions options, Action<string>? info = null,
        Action<string, int, int, double>? progress = null, CancellationToken cancel = default)
    {
        foreach (var m in options.Methods)
            if (!ClassifyMethods.Names.Contains(m)) throw new InputException($"--methods: '{m}' is not one of {string.Join(", ", ClassifyMethods.Names)}");
        ClassifyDatasets.Validate(options.Dataset, "--dataset");
        var (train, test) = ClassifyDatasets.Continual(options.Dataset, options.MnistTarball, info);
        var backboneHash = Runs.RunDirectory.Sha256File(ClassifyTasks.RequireFile(options.BackbonePath, "--backbone"));
        var runsDir = Path.Combine(options.OutDir, "runs");
        Directory.CreateDirectory(runsDir);
        var results = new List<ClassifyMethodRun>();
        foreach (var seed in options.Seeds)
        {
            foreach (var method in options.Methods)
            {
                cancel.ThrowIfCancellationRequested();
                var training = Options(options, method, seed);
                var tasks = method == "joint" ? [[.. ClassifyBenchmarkOptions.TaskClasses(seed, options.Tasks).SelectMany(c => c)]] : ClassifyBenchmarkOptions.TaskClasses(seed, options.Tasks);
                var fingerprint = Fingerprint(method, seed, options.Tasks, training, backboneHash, options.Dataset);
                var cachePath = Path.Combine(runsDir, $"{method}-seed{seed}.json");
                if (TryLoad(cachePath, fingerprint) is { } cached)
                {
                    info?.Invoke($"{method} seed {seed}: reusing the finished run in {cachePath}");
                    results.Add(cached);
                    continue;
                }
                var run = RunOne(options, method, seed, training, tasks, train, test, info, progress, cancel);
                AtomicFile.WriteAllText(cachePath, JsonSerializer.Serialize(new CacheEntry(fingerprint, run), ResultsJson.Options));
                results.Add(run);
            }
        }
        return results;
    }

    private static ClassifyOptions Options(ClassifyBenchmarkOptions options, string method, long seed)
    {
        // CODA-Prompt divides its components among the tasks it expects: the benchmark knows how many there are.
        var o = ClassifyDefaults.ForMethod(method, options.Training) with { Seed = seed, ExpectedTasks = options.Tasks };
        return options.Override?.Invoke(method, o) ?? o;
    }

    private static ClassifyMethodRun RunOne(ClassifyBenchmarkOptions options, string method, long seed, ClassifyOptions training,
        IReadOnlyList<IReadOnlyList<int>> tasks, LabeledImages train, LabeledImages test, Action<string>? info,
        Action<string, int, int, double>? progress, CancellationToken cancel)
    {
        using var scope = torch.NewDisposeScope();
        var (backbone, _) = VitCheckpoint.Load(options.BackbonePath);
        using var _b = backbone;
        using var learner = ClassifyMethods.Create(method, backbone, training);
        var reportTasks = method == "joint" ? ClassifyBenchmarkOptions.TaskClasses(seed, options.Tasks) : tasks;
        var rows = new List<double[]>();
        var seconds = new List<double>();
        long trained = 0;
        for (int t = 0; t < tasks.Count; t++)
        {
            cancel.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            var taskTrain = train.OfClasses(tasks[t].ToHashSet());
            var result = ClassTaskTrainer.LearnTask(learner, tasks[t], taskTrain, (s, total, loss) => progress?.Invoke($"{method} seed {seed} task {t + 1}", s, total, loss), cancel);
            seconds.Add(clock.Elapsed.TotalSeconds);
            trained = learner.TrainableGroups().Sum(g => g.Parameters.Sum(p => p.numel()));
            // Score every task so far (joint: its one task, reported by the continual methods' task groups).
            var scored = method == "joint" ? reportTasks : tasks.Take(t + 1).ToList();
            var row = ClassifyEvaluation.AccuracyPerTask(learner, test, scored);
            rows.Add(row);
            info?.Invoke($"{method} seed {seed}: after task {t + 1}/{tasks.Count} ({string.Join(",", tasks[t])}): " +
                string.Join(" ", row.Select((a, i) => $"T{i + 1} {100 * a:F1}%")) + $" — mean {100 * row.Average():F1}% ({result.Seconds:F1} s)");
        }
        return new ClassifyMethodRun
        {
            Method = method, Seed = seed, TaskClasses = reportTasks, R = [.. rows], SecondsPerTask = [.. seconds], TrainedValuesPerTask = trained,
        };
    }

    private sealed record CacheEntry(string Fingerprint, ClassifyMethodRun Run);

    private static ClassifyMethodRun? TryLoad(string path, string fingerprint)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var entry = JsonSerializer.Deserialize<CacheEntry>(File.ReadAllText(path), ResultsJson.Options);
            return entry?.Fingerprint == fingerprint ? entry.Run : null;
        }
        catch (JsonException) { return null; }
    }

    /// Everything a run's numbers depend on: method, seed, task split, training options, backbone bytes, data version.
    private static string Fingerprint(string method, long seed, int tasks, ClassifyOptions training, string backboneHash, string dataset)
    {
        // The digits' form is the one earlier caches were written with.
        var data = dataset == "mnist" ? $"{MnistDigits.TarballSha512}|test every {MnistDigits.TestEvery}" : ClassifyDatasets.Fingerprint(dataset);
        var text = $"v2|{method}|{seed}|{tasks}|{JsonConfig.Serialize(training)}|{backboneHash}|{data}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }
}
