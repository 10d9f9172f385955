using System.Globalization;
using ContinualDiffusion.Sampling;
using TorchSharp;

namespace ContinualDiffusion.Benchmarks;

/// Times a whole `cdiff sample` generation (TextToImagePipeline: text encoding, guided UNet steps on a doubled
/// batch, VAE decode) on an architecture from configs/models/*.json with random weights, and reports the
/// per-step time the pipeline itself measures plus the process's peak RSS, the figure a user's machine needs.
///
///   bench sample --model-config configs/models/sd15.json --tokenizer DIR [--steps 3] [--size 512] [--scheduler ddim] [--onednn on|off]
internal static class SampleBenchmark
{
    public static int Run(string[] args)
    {
        var o = BenchOptions.Parse("sample", args, "model-config", "tokenizer", "steps", "size", "scheduler", "onednn");
        int steps = o.Int("steps", 3);
        int? sizeGiven = o.Has("size") ? o.Int("size", 0, min: 8) : null;
        string architecture = o.Required("model-config"), tokenizer = o.Required("tokenizer");
        string scheduler = o.OneOf("scheduler", "ddim", "ddim", "dpm++", "euler");
        Runtime.TorchSetup.Initialize();
        string oneDnn = TrainBenchmark.OneDnn(o);
        using var model = TrainBenchmark.Build(architecture, tokenizer);
        int size = sizeGiven ?? model.Unet.Config.SampleSize * model.VaeScaleFactor;
        Console.WriteLine($"{architecture}: {size}x{size}, {steps} steps, oneDNN {oneDnn}, RSS after build {TrainBenchmark.Rss("VmRSS")}");

        var stepTimes = new List<double>();
        var progress = new SyncProgress(p => { stepTimes.Add(p.StepSeconds); Console.WriteLine($"  step {p.Step}/{p.TotalSteps}: {p.StepSeconds:F2} s"); });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var image = new TextToImagePipeline(model).Generate(new SampleRequest
        {
            Prompt = "a photo of a cat", Steps = steps, Seed = 0, Height = size, Width = size,
            Scheduler = scheduler,
        }, progress);
        double total = clock.Elapsed.TotalSeconds;
        var steady = stepTimes.Skip(1).DefaultIfEmpty(stepTimes[0]).ToList();
        Console.WriteLine($"UNet step (guided, batch 2): mean {steady.Average():F2} s after the first ({stepTimes[0]:F2} s); whole generation {total:F1} s; image [{string.Join(", ", image.shape)}]");
        Console.WriteLine($"peak RSS {TrainBenchmark.Rss("VmHWM")}");
        return 0;
    }

    /// Progress<T> posts to the thread pool; the benchmark wants the callbacks in order, on the caller's thread.
    private sealed class SyncProgress(Action<SampleProgress> report) : IProgress<SampleProgress>
    {
        public void Report(SampleProgress value) => report(value);
    }
}
