using System.Diagnostics;
using System.Globalization;
using ContinualDiffusion.Benchmarks;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

// Times UNet2DConditionModel forward passes (random weights) the way sampling with classifier-free guidance
// calls it: one batch of 2 (unconditional + conditional) per step. Prints per-forward times and peak RSS.
//
//   bench-unet [--config unet.json] [--size 64] [--batch 2] [--runs 3] [--threads N] [--context 77]
try
{
    return Run(args);
}
catch (BenchUsageException e)
{
    Console.Error.WriteLine($"bench {e.Message}");
    return 2;
}

static int Run(string[] args)
{
    if (args.Length > 0 && args[0] == "robustness") return ContinualDiffusion.Benchmarks.Robustness.RobustnessBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "robustness-worker") return ContinualDiffusion.Benchmarks.Robustness.CliWorker.Serve();
    if (args.Length > 0 && args[0] == "train") return ContinualDiffusion.Benchmarks.TrainBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "prompts") return ContinualDiffusion.Benchmarks.PromptAccuracyBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "concept-images") return ContinualDiffusion.Benchmarks.PromptAccuracyBenchmark.WriteConceptImages(args[1..]);
    if (args.Length > 0 && args[0] == "classifier") return ContinualDiffusion.Benchmarks.ClassifierBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "sample") return ContinualDiffusion.Benchmarks.SampleBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "memory") return ContinualDiffusion.Benchmarks.MemoryBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "onednn-conv") return ContinualDiffusion.Benchmarks.OneDnnConvBenchmark.Run(args[1..]);
    if (args.Length > 0 && args[0] == "memory-worker") return ContinualDiffusion.Benchmarks.MemoryBenchmark.Worker(args[1..]);
    var options = BenchOptions.Parse("unet", args, "config", "size", "batch", "runs", "threads", "context");
    string configPath = options.Required("config");
    int size = options.Int("size", 64), batch = options.Int("batch", 2), runs = options.Int("runs", 3), tokens = options.Int("context", 77);
    ContinualDiffusion.Runtime.TorchSetup.Initialize();
    if (options.Has("threads")) torch.set_num_threads(options.Int("threads", 0));

    var config = UNetConfig.Load(configPath);
    Console.WriteLine($"config {configPath}: block_out_channels [{string.Join(", ", config.BlockOutChannels)}], cross_attention_dim {config.CrossAttentionDim}");
    Console.WriteLine($"torch threads {torch.get_num_threads()}, latents [{batch}, {config.InChannels}, {size}, {size}], context [{batch}, {tokens}, {config.CrossAttentionDims()[0]}]");

    var build = Stopwatch.StartNew();
    torch.manual_seed(0);
    using var unet = new UNet2DConditionModel(config);
    unet.eval();
    long parameters = unet.parameters().Sum(p => p.numel());
    Console.WriteLine($"built in {build.Elapsed.TotalSeconds:F1} s: {parameters:N0} parameters ({parameters * 4 / 1e9:F2} GB fp32), RSS {Rss("VmRSS")}");

    using var noGrad = torch.no_grad();
    using var sample = torch.randn(batch, config.InChannels, size, size);
    using var context = torch.randn(batch, tokens, config.CrossAttentionDims()[0]);
    using var timestep = torch.tensor(500L);

    var times = new List<double>();
    for (int i = 0; i <= runs; i++)
    {
        using var scope = torch.NewDisposeScope();
        var sw = Stopwatch.StartNew();
        var output = unet.call(sample, timestep, context);
        _ = output.sum().item<float>(); // force completion
        sw.Stop();
        string label = i == 0 ? "warm-up" : $"run {i}";
        Console.WriteLine($"{label}: {sw.Elapsed.TotalSeconds:F2} s, output [{string.Join(", ", output.shape)}], finite {output.isfinite().all().item<bool>()}");
        if (i > 0) times.Add(sw.Elapsed.TotalSeconds);
    }
    Console.WriteLine($"forward (batch {batch}, {size}x{size} latents): mean {times.Average():F2} s, min {times.Min():F2} s over {runs} runs");
    Console.WriteLine($"peak RSS {Rss("VmHWM")}");
    return 0;
}

static string Rss(string field)
{
    var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
    if (line is null) return "n/a";
    long kb = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    return $"{kb / 1024.0 / 1024.0:F2} GiB";
}
