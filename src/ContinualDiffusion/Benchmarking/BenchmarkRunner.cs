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

/// The continual-customization benchmark: for every seed and method, learn the fine-grained Fashion-MNIST classes
/// (FashionConcepts) as concepts <v1>..<vT> one task after another (through the same library call as `cdiff train`),
/// and after every task sample every concept learned so far and score it with the classifier (accuracy → R[t][i],
/// MMD² → Mmd[t][i], KID → Kid[t][i]).
/// Writes results.json, report.md, the figures and one sample grid per method into the output folder.
public sealed class BenchmarkRunner(BenchmarkOptions options, IBenchmarkProgress? progress = null, Device? device = null,
    Runtime.ComputePrecision? precision = null)
{
    private readonly BenchmarkOptions _o = options.Validated();
    private readonly IBenchmarkProgress _progress = progress ?? SilentProgress.Instance;

    public const string RunsFolder = "runs";
    public const string WorkFolder = "work";

    /// The sample grid of one seed: every method side by side.
    public static string GridFileName(long seed) => $"samples-seed{seed}.png";

    /// One method's sample grid of one seed (written instead of the side-by-side grid when more than
    /// MaxPanelsPerGrid methods run: nine panels side by side are too small to see).
    public static string GridFileName(long seed, string method) => $"samples-seed{seed}-{RunCache.FileSafe(method)}.png";

    public const int MaxPanelsPerGrid = 4;

    public BenchmarkResults Run(CancellationToken cancel = default)
    {
        var wall = Stopwatch.StartNew();
        Directory.CreateDirectory(_o.OutDir);
        using var baseModel = BaseModelSource.Open(_o.ModelPath, _o.SingleFile);
        _progress.Info($"loading Fashion-MNIST from {_o.DataDir}");
        var train = FashionMnist.LoadTrain(_o.DataDir);
        var test = FashionMnist.LoadTest(_o.DataDir);
        var (classifier, classifierAccuracy) = ClassifierCache.LoadOrTrain(_o.ClassifierPath, train, test, _o.ClassifierEpochs, _progress.Info);
        using var classifierScope = classifier;
        _progress.Info($"scoring classifier: {_o.ClassifierPath} (test accuracy {classifierAccuracy:P1})");

        string modelHash = baseModel.ComputeIdentityHash();
        string fingerprintBase = Fingerprint(modelHash, classifierAccuracy, Runs.RunDirectory.Sha256File(_o.ClassifierPath));
        string legacyFingerprintBase = Fingerprint(modelHash, classifierAccuracy, classifierSha256: null);
        var cache = new RunCache(Path.Combine(_o.OutDir, RunsFolder));
        var specs = _o.MethodSpecs();
        var ceiling = CeilingPerConcept(classifier, test);
        var runs = new List<MethodRun>();
        foreach (var seed in _o.Seeds)
        {
            var sampling = new PromptClassAccuracy.Settings(_o.Samples, _o.SampleSteps, _o.Guidance, Seed: 1234 + 1_000_003L * seed, Batch: _o.SampleBatch, GuidanceRescale: _o.GuidanceRescale);
            using var scorer = new ConceptScorer(classifier, test, sampling);
            Dictionary<string, double>? baseBefore = null;
            foreach (var spec in specs)
            {
                cancel.ThrowIfCancellationRequested();
                string perRun = $"|{JsonSerializer.Serialize(spec, ResultsJson.Options)}|seed {seed}{MethodFingerprint(spec)}{PrecisionFingerprint}";
                string fingerprint = fingerprintBase + perRun, legacyFingerprint = legacyFingerprintBase + perRun;
                if (cache.TryLoad(spec.Label, seed, fingerprint, legacyFingerprint) is { } cached && File.Exists(cache.SamplesPathOf(spec.Label, seed)))
                {
                    _progress.Info($"{spec.Label} seed {seed}: reusing the finished run in {cache.PathOf(spec.Label, seed)}");
                    runs.Add(cached);
                    continue;
                }
                if (cache.Mismatch(spec.Label, seed, fingerprint, legacyFingerprint) is { } why) _progress.Info($"{spec.Label} seed {seed}: recomputed; {why}");
                if (spec.Continual && _o.ScoreBaseClasses && baseBefore is null)
                    baseBefore = ScoreBaseModel(baseModel, scorer, seed, cancel);
                var firstTask = spec.Continual ? null : SameFirstTask(spec, specs, runs, seed);
                var run = RunMethod(spec, seed, train, scorer, spec.Continual ? baseBefore : null, cache, firstTask, cancel);
                cache.Save(spec.Label, seed, fingerprint, run);
                runs.Add(run);
            }
        }

        var results = new BenchmarkResults
        {
            ConceptNames = [.. Enumerable.Range(1, _o.Tasks).Select(ConceptName)],
            Ceiling = ceiling,
            Runs = runs,
            Config = ReportConfig(classifierAccuracy, wall.Elapsed.TotalSeconds),
        };
        var grids = SaveGrids(specs, cache, _o.Seeds[0]);
        BenchmarkReport.WriteAll(_o.OutDir, results, grids);
        TryDeleteDirectory(Path.Combine(_o.OutDir, WorkFolder));
        _progress.Info($"benchmark done in {wall.Elapsed.TotalMinutes:F1} min: {Path.Combine(_o.OutDir, BenchmarkReport.ReportFileName)}");
        return results;
    }

    /// One method with one seed over all tasks.
    /// `firstTask`: a finished continual run of this seed whose first task is this (reference) run's first concept
    /// trained identically; its scores and grid cell are taken instead of training and sampling the same thing again.
    private MethodRun RunMethod(MethodSpec spec, long seed, FashionMnist.Split train, ConceptScorer scorer,
        Dictionary<string, double>? baseBefore, RunCache cache, MethodRun? firstTask, CancellationToken cancel)
    {
        int tasks = _o.Tasks;
        string name = $"{spec.Label} seed {seed}";
        string runRoot = Path.Combine(_o.OutDir, WorkFolder, $"{RunCache.FileSafe(spec.Label)}-seed{seed}");
        TryDeleteDirectory(runRoot); // a half-finished run from an interrupted benchmark: its tasks are redone
        var r = Matrix(tasks);
        var mmd = Matrix(tasks);
        var kid = Matrix(tasks);
        var grid = new Tensor?[tasks, tasks];
        var baseAfter = new Dictionary<string, double>();
        double trainSeconds = 0, sampleSeconds = 0;
        var trainedValues = new List<long>();
        var adapterBytes = new List<long>();
        long? unetParameters = null;
        try
        {
            for (int t = 0; t < tasks; t++)
            {
                if (t == 0 && firstTask is not null)
                {
                    (r[0][0], mmd[0][0], kid[0][0]) = (firstTask.R[0][0], firstTask.Mmd[0][0], firstTask.Kid?[0][0] ?? double.NaN);
                    grid[0, 0] = LoadCell(cache.SamplesPathOf(firstTask.Method, seed), CellKey(0, 0));
                    _progress.Info($"{name}: {ConceptName(1)} is {firstTask.Method}'s task 1 (same method, options, images and seed): its scores are reused, accuracy {r[0][0]:P0}");
                    continue;
                }
                int label = _o.Concepts[t];
                _progress.Info($"{name}: task {t + 1}/{tasks}, learning {ConceptName(t + 1)} from {_o.ImagesPerConcept} images");
                var clock = Stopwatch.StartNew();
                string taskRun = spec.Continual ? runRoot : Path.Combine(runRoot, $"concept-{t + 1}");
                TrainConcept(spec, seed, train, label, t, taskRun, name, cancel);
                trainSeconds += clock.Elapsed.TotalSeconds;
                var written = WrittenTask(taskRun, spec.Continual ? t + 1 : 1);
                trainedValues.Add(written.Parameters);
                adapterBytes.Add(written.Bytes);

                clock.Restart();
                using var model = RunModel.LoadForSampling(new RunDirectory(taskRun), device: device, precision: precision);
                unetParameters ??= model.Unet.parameters().Sum(p => p.numel());
                // Continual: every concept so far, with all adapters merged. Reference: only the new concept, with
                // its own adapter alone (its token is <v1> in its own run); earlier concepts' scores cannot change.
                var concepts = spec.Continual ? Enumerable.Range(0, t + 1) : [t];
                foreach (int i in concepts)
                {
                    string token = Text.ConceptTokens.Name(spec.Continual ? i + 1 : 1);
                    var target = new PromptTarget(_o.Concepts[i], _o.ConceptPromptTemplate.Replace("{}", token));
                    var score = scorer.Score(model, target, cancel);
                    (r[t][i], mmd[t][i], kid[t][i], grid[t, i]) = (score.Accuracy, score.Mmd, score.Kid, score.GridSamples);
                    string others = score.OtherClasses(target.AcceptedLabels);
                    _progress.Info($"{name}: after task {t + 1}, {ConceptName(i + 1)}: accuracy {score.Accuracy:P0}, MMD² {score.Mmd:F4}, KID {score.Kid:F4}{(others.Length > 0 ? "; " + others : "")}");
                }
                if (spec.Continual && t == tasks - 1 && baseBefore is not null)
                    baseAfter = ScoreBaseClasses(model, scorer, $"{name}: after the last task", cancel);
                sampleSeconds += clock.Elapsed.TotalSeconds;
            }
            if (!spec.Continual) FillReferenceRows(r, mmd, kid);
            // The grid's samples (a few per cell) are kept with the cached run, so the picture of all methods side by
            // side can be drawn whichever runs were reused. The reference's concept i looks the same after every task.
            var cells = new Dictionary<string, Tensor>();
            for (int t = 0; t < tasks; t++)
                for (int i = 0; i <= t; i++)
                    cells[CellKey(t, i)] = spec.Continual ? grid[t, i]! : grid[i, i]!;
            SafeTensorsFile.Save(cache.SamplesPathOf(spec.Label, seed), cells);
        }
        finally
        {
            foreach (var g in grid) g?.Dispose();
        }
        if (_o.KeepRuns && spec.Continual && seed == _o.Seeds[0])
        {
            // The first seed's continual runs stay as real run directories (cdiff sample --run / status work on them).
            string kept = KeptRunPath(spec.Label);
            TryDeleteDirectory(kept);
            Directory.Move(runRoot, kept);
        }
        TryDeleteDirectory(runRoot); // adapters are not part of the results; keep the disk clean across many runs
        return new MethodRun
        {
            Method = spec.Label, Lambda = spec.Lambda, Seed = seed, R = r, Mmd = mmd, Kid = kid,
            BaseClassAccuracyBefore = baseBefore ?? [], BaseClassAccuracyAfter = baseBefore is null ? [] : baseAfter,
            TrainSeconds = trainSeconds, SampleSeconds = sampleSeconds,
            TrainedValuesPerTask = trainedValues.Count == 0 ? null : trainedValues.Average(),
            AdapterBytesPerTask = adapterBytes.Count == 0 ? null : adapterBytes.Average(),
            UnetParameters = unetParameters,
        };
    }

    /// The task just committed: the values its adapter file holds and its size.
    private static Runs.TaskStatus WrittenTask(string runDir, int task)
    {
        var run = new RunDirectory(runDir);
        return Runs.TaskStatus.Of(run, run.ReadManifest().Tasks.Single(e => e.Task == task));
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
                SingleFile = spec.Continual && t > 0 ? null : _o.SingleFile, // later tasks reopen it as the manifest says
                Config = TrainingConfigFor(spec, seed),
                Device = device,
                Precision = precision,
            };
            string what = $"{name} task {t + 1}";
            ContinualTraining.TrainTask(request, step => _progress.TrainStep(what, step), w => _progress.Info($"warning: {w}"), cancel);
        }
        finally { TryDeleteDirectory(images); }
    }

    /// Where `KeepRuns` leaves a method's run directory: <out>/run-<method>.
    public string KeptRunPath(string method) => Path.Combine(_o.OutDir, $"run-{RunCache.FileSafe(method)}");

    /// The training config of every task of a run: the benchmark's, with the method's name, λ and the seed.
    public TrainingConfig TrainingConfigFor(MethodSpec spec, long seed) => _o.Training.ForMethod(spec.TrainingMethod) with
    {
        Lambda = double.IsNaN(spec.Lambda) ? _o.Training.Lambda : spec.Lambda,
        Seed = seed,
        CheckpointEvery = 0, // a benchmark task is redone, not resumed, if interrupted
    };

    private Dictionary<string, double> ScoreBaseModel(BaseModelSource baseModel, ConceptScorer scorer, long seed, CancellationToken cancel)
    {
        using var model = StableDiffusion.Load(baseModel, device, precision);
        return ScoreBaseClasses(model, scorer, $"seed {seed}: base model before customization", cancel);
    }

    /// Accuracy of the base model's own coarse prompts ("a photo of a shoe" counts any shoe): does customization
    /// damage what the model knew?
    private Dictionary<string, double> ScoreBaseClasses(StableDiffusion model, ConceptScorer scorer, string what, CancellationToken cancel)
    {
        var scores = new Dictionary<string, double>();
        foreach (var target in FashionConcepts.BasePrompts(_o.BasePromptTemplate))
        {
            using var s = scorer.Score(model, target, cancel);
            scores[target.Prompt] = s.Accuracy;
            _progress.Info($"{what}: \"{target.Prompt}\" accuracy {s.Accuracy:P0}");
        }
        _progress.Info($"{what}: base-class accuracy {string.Join(", ", scores.Select(kv => $"{kv.Key} {kv.Value:P0}"))}");
        return scores;
    }

    /// "<v3> = coat" for task 3 of this benchmark's concept sequence.
    private string ConceptName(int task) => FashionConcepts.ConceptName(task, _o.Concepts);

    private static string CellKey(int afterTask, int concept) => $"after_task{afterTask + 1}.concept{concept + 1}";

    /// The continual run of this seed, already finished, whose task 1 trains exactly what the reference's first
    /// concept trains: the same training method and options (λ does not act at task 1, and not at all for LoRA),
    /// from the base model, on the same images. Null when there is none (e.g. `--methods clora,reference`).
    private MethodRun? SameFirstTask(MethodSpec reference, IReadOnlyList<MethodSpec> specs, IReadOnlyList<MethodRun> finished, long seed)
    {
        var wanted = Normalised(TrainingConfigFor(reference, seed));
        var twin = specs.FirstOrDefault(s => s.Continual && Normalised(TrainingConfigFor(s, seed)) == wanted);
        return twin is null ? null : finished.FirstOrDefault(r => r.Method == twin.Label && r.Seed == seed);

        static TrainingConfig Normalised(TrainingConfig c) => c with { Lambda = c.EffectiveLambda };
    }

    private static Tensor LoadCell(string samplesPath, string key)
    {
        var cells = SafeTensorsFile.Load(samplesPath);
        if (!cells.Remove(key, out var cell)) throw new InvalidDataException($"{samplesPath}: no samples under '{key}'");
        foreach (var other in cells.Values) other.Dispose();
        return cell;
    }

    /// The grids of one seed: samples-seed{seed}.png with every method side by side, or one grid per method when there
    /// are more than MaxPanelsPerGrid. Returns the file names written.
    private IReadOnlyList<string> SaveGrids(IReadOnlyList<MethodSpec> specs, RunCache cache, long seed)
    {
        if (specs.Count <= MaxPanelsPerGrid)
        {
            SaveGrid(specs, cache, seed, GridFileName(seed));
            return [GridFileName(seed)];
        }
        foreach (var s in specs) SaveGrid([s], cache, seed, GridFileName(seed, s.Label));
        return [.. specs.Select(s => GridFileName(seed, s.Label))];
    }

    /// One panel per method, rows = concepts, columns = after task t.
    private void SaveGrid(IReadOnlyList<MethodSpec> specs, RunCache cache, long seed, string fileName)
    {
        var loaded = specs.Select(s => SafeTensorsFile.Load(cache.SamplesPathOf(s.Label, seed))).ToList();
        try
        {
            var panels = specs.Select((s, k) => new GridPanel(PanelTitle(s),
                (t, i) => loaded[k].TryGetValue(CellKey(t, i), out var cell) ? cell : null)).ToList();
            SampleGrid.Save(Path.Combine(_o.OutDir, fileName), _o.Tasks,
                [.. Enumerable.Range(1, _o.Tasks).Select(ConceptName)], panels,
                new Dictionary<string, string> { ["layout"] = "panels: methods; rows: concepts <v1>..; columns: after task 1..", ["seed"] = seed.ToString(CultureInfo.InvariantCulture) });
        }
        finally
        {
            foreach (var d in loaded) foreach (var t in d.Values) t.Dispose();
        }
    }

    private static string PanelTitle(MethodSpec s) => !s.Continual ? "reference (each concept alone)" : s.TrainingMethod switch
    {
        "clora" => $"C-LoRA (λ = {ReportFormat.Lambda(s.Lambda)})",
        "lora" => "LoRA (sequential)",
        "textual-inversion" => "Textual Inversion",
        "custom-diffusion" => "Custom Diffusion (sequential)",
        "custom-diffusion-merge" => "Custom Diffusion (merge)",
        "magmax" => "MagMax",
        "ortho-init" => "LoRA ortho-init",
        "anchored-lora" => $"anchored LoRA (λ = {ReportFormat.Lambda(s.Lambda)})",
        _ => s.Label,
    };

    /// The reference samples each concept with its own adapter only, so its score is the same after every later
    /// task (same adapter, same sampling seeds): R[t][i] = R[i][i].
    private static void FillReferenceRows(double[][] r, double[][] mmd, double[][] kid)
    {
        for (int t = 0; t < r.Length; t++)
            for (int i = 0; i < t; i++) (r[t][i], mmd[t][i], kid[t][i]) = (r[i][i], mmd[i][i], kid[i][i]);
    }

    /// The classifier's accuracy on all real test images of each concept's class: what a perfect concept can score.
    private Dictionary<string, double> CeilingPerConcept(FashionClassifier classifier, FashionMnist.Split test)
    {
        var ceiling = new Dictionary<string, double>();
        for (int t = 1; t <= _o.Tasks; t++)
        {
            ceiling[ConceptName(t)] = ClassifierTraining.ClassAccuracy(classifier, test, _o.Concepts[t - 1]);
            _progress.Info($"ceiling: the classifier recognises {ceiling[ConceptName(t)]:P1} of the real test images of {FashionConcepts.Name(_o.Concepts[t - 1])}");
        }
        return ceiling;
    }

    private static double[][] Matrix(int tasks) => [.. Enumerable.Range(0, tasks).Select(t => new double[t + 1])];

    /// Everything a finished run's numbers depend on; a cached run with another fingerprint is recomputed.
    /// The classifier is named by its SHA-256, so a clone moved or copied elsewhere (with its shipped classifier) keeps
    /// its cache. Runs cached before that named it by its full path: with `classifierSha256` null this gives their
    /// fingerprint, accepted too when the classifier is still at that path.
    private string Fingerprint(string modelHash, double classifierAccuracy, string? classifierSha256) => JsonSerializer.Serialize(new
    {
        modelHash, classifier = classifierSha256 is null ? Path.GetFullPath(_o.ClassifierPath) : null, classifierSha256, classifierAccuracy, _o.Tasks, _o.ImagesPerConcept, _o.Samples,
        _o.SampleSteps, _o.Guidance, _o.GuidanceRescale, _o.SampleBatch, _o.ScoreBaseClasses, _o.BasePromptTemplate, _o.ConceptPromptTemplate, _o.DataDir,
        protocol = "fine-grained v1", // FashionProtocol: concept pools, coarse base prompts, KID
        concepts = _o.Concepts.SequenceEqual(FashionConcepts.Labels) ? null : string.Join(",", _o.Concepts), // only when not the default, so earlier caches stay valid
        // λ and a method's own defaults are each run's own (MethodSpec.Lambda, MethodFingerprint): the shared part holds a
        // fixed λ, so changing the default λ (read by clora alone) keeps every other method's finished runs.
        training = Configuration.JsonConfig.Serialize(_o.Training with { Methods = null, Lambda = FingerprintLambda }),
    }, FingerprintJson);

    /// The λ the shared fingerprint is written with (the value every cache before per-run λ was made with).
    private const double FingerprintLambda = 1;

    /// Null members are left out, so a setting added later (null = its old behaviour) keeps the caches made before it.
    private static readonly JsonSerializerOptions FingerprintJson = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    /// What a run's numbers depend on beyond the shared fingerprint: the method's own defaults from the config's
    /// `methods` section, when it has any (so methods without them keep the caches they had before the section existed).
    /// A bf16/fp16 run's numbers differ from float32's: never reuse one for the other (float32 adds nothing, so the
    /// caches written before `--dtype` existed stay valid).
    private string PrecisionFingerprint => precision is { Weights: not ScalarType.Float32 } p ? $"|dtype {p.Name}{(p.VaeFp32 ? " vae fp32" : "")}" : "";

    private string MethodFingerprint(MethodSpec spec) =>
        (_o.Training.Methods is { } m && m.TryGetValue(spec.TrainingMethod, out var d) ? "|method defaults " + JsonSerializer.Serialize(d, ResultsJson.Options) : "")
        + (MethodAlgorithmVersions.TryGetValue(spec.TrainingMethod, out var v) ? $"|algorithm {v}" : "");

    /// A method whose computation changed gets a version here, so its cached runs from the old code are recomputed
    /// while every other method keeps its cache.
    private static readonly Dictionary<string, string> MethodAlgorithmVersions = new(StringComparer.Ordinal)
    {
        ["custom-diffusion-merge"] = "merge on the concept token's rows (2026-12-07)",
    };

    private Dictionary<string, string> ReportConfig(double classifierAccuracy, double wallSeconds)
    {
        var inv = CultureInfo.InvariantCulture;
        var config = new Dictionary<string, string>
        {
            ["base model"] = Path.GetFullPath(_o.ModelPath),
            ["concepts"] = string.Join(" → ", Enumerable.Range(1, _o.Tasks).Select(ConceptName)),
            ["images per concept"] = _o.ImagesPerConcept.ToString(inv),
            ["training steps per task"] = _o.Training.Steps.ToString(inv),
            ["rank / learning rate / token learning rate"] = $"{_o.Training.Rank} / {_o.Training.LearningRate.ToString(inv)} / {_o.Training.TokenLearningRate.ToString(inv)}",
            ["clora default λ"] = ReportFormat.Lambda(_o.Training.Lambda),
            ["λ sweep"] = _o.Lambdas.Count == 0 ? "none" : string.Join(", ", _o.Lambdas.Select(ReportFormat.Lambda)),
            ["seeds"] = string.Join(", ", _o.Seeds),
            ["samples per concept"] = _o.Samples.ToString(inv),
            ["sampling"] = $"{_o.SampleSteps} DDIM steps, guidance {_o.Guidance.ToString(inv)}{(_o.GuidanceRescale > 0 ? $" rescaled by {_o.GuidanceRescale.ToString(inv)}" : "")}, prompt \"{_o.ConceptPromptTemplate.Replace("{}", "<vi>")}\"",
            ["base-model prompts"] = _o.ScoreBaseClasses ? $"{string.Join(", ", FashionConcepts.BasePrompts(_o.BasePromptTemplate).Select(p => $"\"{p.Prompt}\""))}; a sample counts when its class belongs to the prompt's group" : "not scored",
            ["scoring classifier"] = $"{Path.GetFileName(_o.ClassifierPath)}, test accuracy {ReportFormat.Percent(classifierAccuracy)} (10 classes)",
            ["MMD² / KID"] = "MMD²: Gaussian kernel, median-distance bandwidth; KID: unbiased, cubic polynomial kernel; both on classifier features (128-d), vs up to 500 real test images of the class",
            ["sample grids"] = $"rows = concepts <v1>..<v{_o.Tasks}>, columns = after task 1..{_o.Tasks}, {ConceptScorer.GridSamplesPerCell} samples per cell, seed {_o.Seeds[0]}",
            ["machine"] = $"{Environment.ProcessorCount} CPU cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            ["wall time"] = ReportFormat.Duration(wallSeconds),
        };
        if (TrainingOptions(_o.Training) is { Length: > 0 } options) config["training options"] = options;
        if (_o.Methods.Contains(BenchmarkOptions.ReferenceMethod))
            config["reference"] = "each concept trained alone from the base model and sampled with only its own adapter: no forgetting by construction" +
                (_o.Methods.Contains("lora") ? "; its first concept is LoRA's task 1 (identical training), reused rather than trained twice, so its train and sample times leave that concept out" : "");
        return config;
    }

    /// The training options a config sets beyond the defaults every reported figure so far used ("" when none).
    internal static string TrainingOptions(Training.TrainingConfig c)
    {
        var inv = CultureInfo.InvariantCulture;
        var parts = new List<string>();
        if (c.BatchSize != 1) parts.Add($"batch size {c.BatchSize}");
        if (c.GradientAccumulationSteps is { } n) parts.Add($"{n} accumulated batches per step");
        if (c.LrScheduler is { } schedule) parts.Add($"{schedule} schedule" + (c.LrWarmupSteps is { } w ? $", {w} warm-up steps" : ""));
        if (c.SnrGamma is { } gamma) parts.Add($"Min-SNR γ {gamma.ToString(inv)}");
        if (c.NoiseOffset is { } offset) parts.Add($"noise offset {offset.ToString(inv)}");
        if (c.AspectBuckets == true) parts.Add($"aspect buckets (step {c.BucketStep ?? Training.TrainingConfig.DefaultBucketStep})");
        return string.Join("; ", parts);
    }

    private static void TryDeleteDirectory(string path)
    {
        try { if (Directory.Exists(path)) Directory.Delete(path, recursive: true); } catch (IOException) { }
    }
}
