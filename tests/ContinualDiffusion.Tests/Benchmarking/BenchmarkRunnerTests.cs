using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Evaluation.Reporting;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Tests.Benchmarking;

/// Runs alone: it is the heaviest test (trains, samples and scores three tasks on two cores). oneDNN's
/// process-wide flag, whose flipping once crashed the host, is settled before any test in TestProcessSetup.
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialTrainingCollection
{
    public const string Name = "serial training";
}

/// An end-to-end benchmark on the tiny random fixture model: every number is meaningless, but every file must be
/// produced, valid and consistent. A random-init classifier stands in for the trained one (minutes to train).
[Collection(SerialTrainingCollection.Name)]
public sealed class BenchmarkRunnerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"cdiff-bench-{Guid.NewGuid():N}");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private sealed class Recorder : IBenchmarkProgress
    {
        public List<string> Messages { get; } = [];
        public int Steps { get; private set; }
        public void Info(string message) => Messages.Add(message);
        public void TrainStep(string what, TrainStepReport step) => Steps++;
    }

    private BenchmarkOptions MiniOptions()
    {
        Directory.CreateDirectory(_dir);
        var classifierPath = Path.Combine(_dir, "classifier.safetensors");
        if (!File.Exists(classifierPath))
        {
            TorchSharp.torch.manual_seed(0);
            using var classifier = new FashionClassifier();
            ClassifierTraining.Save(classifier, classifierPath, new Dictionary<string, string> { [ClassifierCache.AccuracyKey] = "0.1000" });
        }
        return new BenchmarkOptions
        {
            ModelPath = Fixture.SdTiny,
            OutDir = Path.Combine(_dir, "out"),
            Methods = ["clora", "lora", "reference"],
            Seeds = [0],
            Tasks = 2,
            ImagesPerConcept = 2,
            Samples = 2,
            SampleSteps = 2,
            ClassifierPath = classifierPath,
            Training = new TrainingConfig { Steps = 2, Rank = 2 },
        };
    }

    [Fact]
    public void A_mini_benchmark_writes_valid_results_report_figures_and_grids_and_reuses_finished_runs()
    {
        var options = MiniOptions() with { KeepRuns = true };
        var progress = new Recorder();
        var results = new BenchmarkRunner(options, progress).Run();

        var read = ResultsJson.Read(Path.Combine(options.OutDir, BenchmarkReport.ResultsFileName)); // validates
        Assert.Equal(["<v1> = pullover", "<v2> = T-shirt/top"], read.ConceptNames);
        Assert.Equal(["clora", "lora", "reference"], read.Runs.Select(r => r.Method));
        // 3 methods × 2 tasks × 2 steps, less the reference's first concept: LoRA's task 1 trained it identically.
        Assert.Equal(3 * 2 * 2 - 2, progress.Steps);
        Assert.Contains(progress.Messages, m => m.Contains("is lora's task 1"));
        Assert.All(read.Runs.Where(r => r.Method != "reference"), r => Assert.Equal(5, r.BaseClassAccuracyAfter.Count));
        Assert.Empty(read.Runs.Single(r => r.Method == "reference").BaseClassAccuracyBefore);

        var report = File.ReadAllText(Path.Combine(options.OutDir, BenchmarkReport.ReportFileName));
        Assert.Contains("| clora |", report);
        Assert.Contains("| reference |", report);
        foreach (var png in new[] { "accuracy-clora.png", "accuracy-reference.png", BenchmarkReport.ConceptCurvesFileName, BenchmarkRunner.GridFileName(0) })
        {
            Assert.True(File.Exists(Path.Combine(options.OutDir, png)), png);
            Assert.Contains(png, report);
        }
        // The report opens with the pictures, then the numbers; the ceiling is the classifier's own accuracy on real images.
        Assert.True(report.IndexOf(BenchmarkRunner.GridFileName(0)) < report.IndexOf("| clora |"));
        Assert.Equal(["<v1> = pullover", "<v2> = T-shirt/top"], read.Ceiling.Keys);
        Assert.All(read.Ceiling.Values, c => Assert.InRange(c, 0, 1));
        Assert.Contains("against the ceiling", report);
        Assert.All(read.Runs, r => Assert.True(r.Kid is { Length: 2 } && double.IsFinite(r.Kid[1][0])));
        Assert.Contains("final KID", report);
        // --keep-runs: the first seed's continual runs stay as run directories cdiff can sample from; the reference's do not.
        Assert.True(File.Exists(Path.Combine(options.OutDir, "run-clora", "manifest.json")));
        Assert.True(File.Exists(Path.Combine(options.OutDir, "run-lora", "manifest.json")));
        Assert.False(Directory.Exists(Path.Combine(options.OutDir, "run-reference")));
        Assert.False(Directory.Exists(Path.Combine(options.OutDir, BenchmarkRunner.WorkFolder))); // adapters and images cleaned up

        // Reference: concept 1 after task 2 was sampled with its own adapter only, so it equals its score after task 1.
        var reference = read.Runs.Single(r => r.Method == "reference");
        Assert.Equal(reference.R[0][0], reference.R[1][0]);
        Assert.Equal(reference.Mmd[0][0], reference.Mmd[1][0]);
        // Continual runs re-sample concept 1 with both adapters merged: a different model, so a different MMD².
        var lora = read.Runs.Single(r => r.Method == "lora");
        Assert.NotEqual(lora.Mmd[0][0], lora.Mmd[1][0]);
        Assert.Equal(reference.Kid![0][0], reference.Kid[1][0]);
        Assert.Equal(lora.R[0][0], reference.R[0][0]);
        Assert.Equal(lora.Kid![0][0], reference.Kid[0][0]);

        File.Delete(Path.Combine(options.OutDir, BenchmarkRunner.GridFileName(0)));
        var again = new Recorder();
        var second = new BenchmarkRunner(options, again).Run();
        Assert.Equal(0, again.Steps);
        Assert.Equal(3, again.Messages.Count(m => m.Contains("reusing the finished run")));
        Assert.Equal(results.Runs.Select(r => r.R[1][1]), second.Runs.Select(r => r.R[1][1]));
        Assert.True(File.Exists(Path.Combine(options.OutDir, BenchmarkRunner.GridFileName(0)))); // redrawn from the cached samples

        // The classifier is named by its content: a copy elsewhere (a clone moved to another folder) keeps the cache.
        var moved = Path.Combine(_dir, "elsewhere", "classifier.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(moved)!);
        File.Copy(options.ClassifierPath, moved);
        var afterMove = new Recorder();
        new BenchmarkRunner(options with { ClassifierPath = moved }, afterMove).Run();
        Assert.Equal(0, afterMove.Steps);
        Assert.Equal(3, afterMove.Messages.Count(m => m.Contains("reusing the finished run")));

        // A run cached before that (its fingerprint names the classifier's full path) is still reused from that path...
        var cache = new RunCache(Path.Combine(options.OutDir, BenchmarkRunner.RunsFolder));
        var cached = cache.PathOf("lora", 0);
        var entry = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(cached))!;
        var fingerprint = entry["fingerprint"]!.GetValue<string>();
        var byHash = $"\"classifierSha256\":\"{ContinualDiffusion.Runs.RunDirectory.Sha256File(options.ClassifierPath)}\"";
        Assert.Contains(byHash, fingerprint);
        entry["fingerprint"] = fingerprint.Replace(byHash, $"\"classifier\":{System.Text.Json.JsonSerializer.Serialize(Path.GetFullPath(options.ClassifierPath))}");
        File.WriteAllText(cached, entry.ToJsonString());
        var legacy = new Recorder();
        new BenchmarkRunner(options, legacy).Run();
        Assert.Equal(3, legacy.Messages.Count(m => m.Contains("reusing the finished run")));
        // ...but not from another path (that fingerprint cannot say which classifier it was).
        var elsewhere = new Recorder();
        new BenchmarkRunner(options with { ClassifierPath = moved }, elsewhere).Run();
        Assert.Equal(2, elsewhere.Messages.Count(m => m.Contains("reusing the finished run")));
        Assert.Contains(elsewhere.Messages, m => m.Contains("lora seed 0: recomputed"));
    }
}
