using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Evaluation.Reporting;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarking;

/// The continual-customization benchmark: for every seed and method, learn the held-out Fashion-MNIST classes as
/// concepts <v1>..<vT> one task after another (through the same library call as `cdiff train`), and after every
/// task sample every concept learned so far and score it with the classifier (accuracy → R[t][i], MMD² → Mmd[t][i]).
/// Writes results.json, report.md, the figures and one sample grid per method into the output folder.
public sealed class BenchmarkRunner(BenchmarkOptions options, IBenchmarkProgress? progress = null, Device? device = null)
{
    private readonly BenchmarkOptions _o = options.Validated();
    private readonly IBenchmarkProgress _progress = progress ?? SilentProgress.Instance;

    public const string RunsFolder = "runs";
    public const string WorkFolder = "work";

    public static string GridFileName(string method, long seed) => $"samples-{RunCache.FileSafe(method)}-seed{seed}.png";

    public BenchmarkResults Run(CancellationToken cancel = default)
    {
        var wall = Stopwatch.StartNew();
        Directory.CreateDirectory(_o.OutDir);
        var folder = DiffusersFolder.Open(_o.ModelPath);
        _progress.Info($"loading Fashion-MNIST from {_o.DataDir}");
        var train = FashionMnist.LoadTrain(_o.DataDir);
        var test = FashionMnist.LoadTest(_o.DataDir);
        var (classifier, classifierAccuracy) = ClassifierCache.LoadOrTrain(_o.ClassifierPath, train, test, _o.ClassifierEpochs, _progress.Info);
        using var classifierScope = classifier;
        _progress.Info($"scoring classifier: {_o.ClassifierPath} (test accuracy {classifierAccuracy:P1})");

        string fingerprintBase = Fingerprint(folder.ComputeIdentityHash(), classifierAccuracy);
        var cache = new RunCache(Path.Combine(_o.OutDir, RunsFolder));
        var specs = _o.MethodSpecs();
        var runs = new List<MethodRun>();
        foreach (var seed in _o.Seeds)
        {
            var sampling = new PromptClassAccuracy.Settings(_o.Samples, _o.SampleSteps, _o.Guidance, Seed: 1234 + 1_000_003L * seed, Batch: _o.SampleBatch);
            using var scorer = new ConceptScorer(classifier, test, sampling);
            Dictionary<string, double>? baseBefore = null;
            foreach (var spec in specs)
            {
                cancel.ThrowIfCancellationRequested();
                string fingerprint = $"{fingerprintBase}|{JsonSerializer.Serialize(spec, ResultsJson.Options)}|seed {seed}";
                if (cache.TryLoad(spec.Label, seed, fingerprint) is { } cached && File.Exists(Path.Combine(_o.OutDir, GridFileName(spec.Label, seed))))
                {
                    _progress.Info($"{spec.Label} seed {seed}: reusing the finished run in {cache.PathOf(spec.Label, seed)}");
                    runs.Add(cached);
                    continue;
                }
                if (spec.Continual && _o.ScoreBaseClasses && baseBefore is null)
                    baseBefore = ScoreBaseModel(folder, scorer, seed, cancel);
                var run = RunMethod(spec, seed, train, scorer, spec.Continual ? baseBefore : null, cancel);
                cache.Save(spec.Label, seed, fingerprint, run);
                runs.Add(run);
            }
        }

        var results = new BenchmarkResults
        {
            ConceptNames = [.. Enumerable.Range(1, _o.Tasks).Select(FashionConcepts.ConceptName)],
            Runs = runs,
            Config = ReportConfig(classifierAccuracy, wall.Elapsed.TotalSeconds),
        };
        var grids = specs.Select(s => GridFileName(s.Label, _o.Seeds[0])).ToList();
        BenchmarkReport.WriteAll(_o.OutDir, results, grids);
        TryDeleteDirectory(Path.Combine(_o.OutDir, WorkFolder));
        _progress.Info($"benchmark done in {wall.Elapsed.TotalMinutes:F1} min: {Path.Combine(_o.OutDir, BenchmarkReport.ReportFileName)}");
        return results;
    }

    /// One method with one seed over all tasks.
    private MethodRun RunMethod(MethodSpec spec, long seed, FashionMnist.Split train, ConceptScorer scorer,
        Dictionary<string, double>? baseBefore, CancellationToken cancel)
    {
        int tasks = _o.Tasks;
        string name = $"{spec.Label} seed {seed}";
        string runRoot = Path.Combine(_o.OutDir, WorkFolder, $"{RunCache.FileSafe(spec.Label)}-seed{seed}");
        TryDeleteDirectory(runRoot); // a half-finished run from an interrupted benchmark: its tasks are redone
        var r = Matrix(tasks);
        var mmd = Matrix(tasks);
        var grid = new Tensor?[tasks, tasks];
        var baseAfter = new Dictionary<string, double>();
        double trainSeconds = 0, sampleSeconds = 0;
        try
        {
            for (int t = 0; t < tasks; t++)
            {
                int label = FashionConcepts.HeldOutLabels[t];
                _progress.Info($"{name}: task {t + 1}/{tasks}, learning {FashionConcepts.ConceptName(t + 1)} from {_o.ImagesPerConcept} images");
                var clock = Stopwatch.StartNew();
                string taskRun = spec.Continual ? runRoot : Path.Combine(runRoot, $"concept-{t + 1}");
                TrainConcept(spec, seed, train, label, t, taskRun, name, cancel);
                trainSeconds += clock.Elapsed.TotalSeconds;

                clock.Restart();
                using var model = RunModel.LoadForSampling(new RunDirectory(taskRun), device: device);
                // Continual: every concept so far, with all adapters merged. Reference: only the new concept, with
                // its own adapter alone (its token is <v1> in its own run); earlier concepts' scores cannot change.
                var concepts = spec.Continual ? Enumerable.Range(0, t + 1) : [t];
                foreach (int i in concepts)
                {
                    string token = Text.ConceptTokens.Name(spec.Continual ? i + 1 : 1);
                    var score = scorer.Score(model, FashionConcepts.HeldOutLabels[i], $"a photo of {token}", cancel);
                    (r[t][i], mmd[t][i], grid[t, i]) = (score.Accuracy, score.Mmd, score.GridSamples);
                    _progress.Info($"{name}: after task {t + 1}, {FashionConcepts.ConceptName(i + 1)}: accuracy {score.Accuracy:P0}, MMD² {score.Mmd:F4}");
                }
                if (spec.Continual && t == tasks - 1 && baseBefore is not null)
                    baseAfter = ScoreBaseClasses(model, scorer, $"{name}: after the last task", cancel);
                sampleSeconds += clock.Elapsed.TotalSeconds;
            }
            if (!spec.Continual) FillReferenceRows(r, mmd);
            SampleGrid.Save(Path.Combine(_o.OutDir, GridFileName(spec.Label, seed)), tasks,
                (t, i) => spec.Continual ? grid[t, i] : grid[i, i],
                new Dictionary<string, string> { ["layout"] = "rows: concepts <v1>..; columns: after task 1..", ["method"] = spec.Label, ["seed"] = seed.ToString(CultureInfo.InvariantCulture) });
        }
        finally
        {
            foreach (var g in grid) g?.Dispose();
        }
        TryDeleteDirectory(runRoot); // adapters are not part of the results; keep the disk clean across many runs
        return new MethodRun
        {
            Method = spec.Label, Lambda = spec.Lambda, Seed = seed, R = r, Mmd = mmd,
            BaseClassAccuracyBefore = baseBefore ?? [], BaseClassAccuracyAfter = baseBefore is null ? [] : baseAfter,
            TrainSeconds = trainSeconds, SampleSeconds = sampleSeconds,
        };
    }

    /// Writes the concept's images (chosen by seed from the train split), trains it as a task, deletes the images.
    private void TrainConcept(MethodSpec spec, long seed, FashionMnist.Split train, int label, int t, string runDir, string name, CancellationToken cancel)
    {
        string images = Path.Combine(_o.OutDir, WorkFolder, "images", $"seed{seed}-task{t + 1}");
        TryDeleteDirectory(images);
        FashionConcepts.WriteFolder(train, label, _o.ImagesPerConcept, seed, images);
        try
        {
            var request = new TrainTaskRequest
            {
                Task = spec.Continual ? t + 1 : 1,
                ImagesDir = images,
                RunDir = runDir,
                ModelPath = spec.Continual && t > 0 ? null : _o.ModelPath,
                Config = TrainingConfigFor(spec, seed),
                Device = device,
            };
            string what = $"{name} task {t + 1}";
            ContinualTraining.TrainTask(request, step => _progress.TrainStep(what, step), w => _progress.Info($"warning: {w}"), cancel);
        }
        finally { TryDeleteDirectory(images); }
    }

    /// The training config of every task of a run: the benchmark's, with the method's name, λ and the seed.
    public TrainingConfig TrainingConfigFor(MethodSpec spec, long seed) => _o.Training with
    {
        Method = spec.TrainingMethod,
        Lambda = double.IsNaN(spec.Lambda) ? _o.Training.Lambda : spec.Lambda,
        Seed = seed,
        CheckpointEvery = 0, // a benchmark task is redone, not resumed, if interrupted
    };

    private Dictionary<string, double> ScoreBaseModel(DiffusersFolder folder, ConceptScorer scorer, long seed, CancellationToken cancel)
    {
        using var model = StableDiffusion.Load(folder, device);
        return ScoreBaseClasses(model, scorer, $"seed {seed}: base model before customization", cancel);
    }

    /// Accuracy of the base model's own class prompts ("a photo of a dress"): does customization damage them?
    private Dictionary<string, double> ScoreBaseClasses(StableDiffusion model, ConceptScorer scorer, string what, CancellationToken cancel)
    {
        var scores = new Dictionary<string, double>();
        foreach (int label in FashionConcepts.BaseLabels)
        {
            string prompt = _o.BasePromptTemplate.Replace("{}", FashionConcepts.PromptNames[label]);
            using var s = scorer.Score(model, label, prompt, cancel);
            scores[FashionConcepts.PromptNames[label]] = s.Accuracy;
            _progress.Info($"{what}: \"{prompt}\" accuracy {s.Accuracy:P0}");
        }
        _progress.Info($"{what}: base-class accuracy {string.Join(", ", scores.Select(kv => $"{kv.Key} {kv.Value:P0}"))}");
        return scores;
    }

    /// The reference samples each concept with its own adapter only, so its score is the same after every later
    /// task (same adapter, same sampling seeds): R[t][i] = R[i][i].
    private static void FillReferenceRows(double[][] r, double[][] mmd)
    {
        for (int t = 0; t < r.Length; t++)
            for (int i = 0; i < t; i++) (r[t][i], mmd[t][i]) = (r[i][i], mmd[i][i]);
    }

    private static double[][] Matrix(int tasks) => [.. Enumerable.Range(0, tasks).Select(t => new double[t + 1])];

    /// Everything a finished run's numbers depend on; a cached run with another fingerprint is recomputed.
    private string Fingerprint(string modelHash, double classifierAccuracy) => JsonSerializer.Serialize(new
    {
        modelHash, classifier = Path.GetFullPath(_o.ClassifierPath), classifierAccuracy, _o.Tasks, _o.ImagesPerConcept, _o.Samples,
        _o.SampleSteps, _o.Guidance, _o.SampleBatch, _o.ScoreBaseClasses, _o.BasePromptTemplate, _o.DataDir,
        training = Configuration.JsonConfig.Serialize(_o.Training),
    });

    private Dictionary<string, string> ReportConfig(double classifierAccuracy, double wallSeconds)
    {
        var inv = CultureInfo.InvariantCulture;
        var config = new Dictionary<string, string>
        {
            ["base model"] = Path.GetFullPath(_o.ModelPath),
            ["images per concept"] = _o.ImagesPerConcept.ToString(inv),
            ["training steps per task"] = _o.Training.Steps.ToString(inv),
            ["rank / learning rate / token learning rate"] = $"{_o.Training.Rank} / {_o.Training.LearningRate.ToString(inv)} / {_o.Training.TokenLearningRate.ToString(inv)}",
            ["clora default λ"] = ReportFormat.Lambda(_o.Training.Lambda),
            ["λ sweep"] = _o.Lambdas.Count == 0 ? "none" : string.Join(", ", _o.Lambdas.Select(ReportFormat.Lambda)),
            ["seeds"] = string.Join(", ", _o.Seeds),
            ["samples per concept"] = _o.Samples.ToString(inv),
            ["sampling"] = $"{_o.SampleSteps} DDIM steps, guidance {_o.Guidance.ToString(inv)}, prompt \"a photo of <vi>\"",
            ["base-class prompts"] = _o.ScoreBaseClasses ? $"\"{_o.BasePromptTemplate}\" for {string.Join(", ", FashionConcepts.BaseLabels.Select(l => FashionConcepts.PromptNames[l]))}" : "not scored",
            ["scoring classifier"] = $"{Path.GetFileName(_o.ClassifierPath)}, test accuracy {ReportFormat.Percent(classifierAccuracy)} (10 classes)",
            ["MMD²"] = "Gaussian kernel, median-distance bandwidth, classifier features (128-d), vs up to 500 real test images of the class",
            ["sample grids"] = $"rows = concepts <v1>..<v{_o.Tasks}>, columns = after task 1..{_o.Tasks}, {ConceptScorer.GridSamplesPerCell} samples per cell, seed {_o.Seeds[0]}",
            ["machine"] = $"{Environment.ProcessorCount} CPU cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            ["wall time"] = ReportFormat.Duration(wallSeconds),
        };
        if (_o.Methods.Contains(BenchmarkOptions.ReferenceMethod))
            config["reference"] = "each concept trained alone from the base model and sampled with only its own adapter: no forgetting by construction";
        return config;
    }

    private static void TryDeleteDirectory(string path)
    {
        try { if (Directory.Exists(path)) Directory.Delete(path, recursive: true); } catch (IOException) { }
    }
}
