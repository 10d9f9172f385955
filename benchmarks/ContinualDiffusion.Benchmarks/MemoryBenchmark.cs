using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarks;

/// `scripts/bench.sh memory`: SD 1.5's architecture with random weights at 512×512, batch 1: the peak resident memory
/// and time of a C-LoRA training step for every dtype × gradient checkpointing, the same step with oneDNN off, and a
/// sampling run per dtype (checkpointing has no effect there: nothing runs backward), side by side in one run. Each
/// configuration runs in a fresh child process, so one's peak cannot hide in another's, and prints one JSON line.
///
///   bench memory [--model-config configs/models/sd15.json] [--tokenizer DIR] [--resolution 512] [--train-steps 3]
///                [--sample-steps 30] [--only train|sample]
internal static class MemoryBenchmark
{
    private const string ResultPrefix = "@@memory ";

    private sealed record Case(string What, string DType, bool Checkpointing, bool OneDnn);

    private sealed record Result(string What, string DType, bool Checkpointing, bool OneDnn, double WeightsGiB, double RssAfterLoadGiB,
        double PeakGiB, double SecondsPerStep, double FirstStepSeconds, int Steps, string Note);

    public static int Run(string[] args)
    {
        var o = Options("memory", args);
        Case[] cases =
        [
            new("train", "fp32", false, true), new("train", "fp32", true, true), new("train", "bf16", false, true), new("train", "bf16", true, true),
            new("train", "fp32", false, false),
            new("sample", "fp32", false, true), new("sample", "bf16", false, true),
        ];
        if (o["only"] != "all") cases = [.. cases.Where(c => c.What == o["only"])];
        Console.WriteLine($"SD architecture {o["model-config"]}, {o["resolution"]}×{o["resolution"]}, batch 1, random weights; {o["train-steps"]} training steps " +
            $"(the first is warm-up), {o["sample-steps"]} sampling steps with guidance (batch 2 per UNet call); one child process per line; torch threads {torch.get_num_threads()}");
        var results = new List<Result>();
        foreach (var c in cases)
        {
            var r = RunChild(c, args);
            results.Add(r);
            Console.WriteLine($"  {Describe(c),-44} step {r.SecondsPerStep,7:F2} s (first {r.FirstStepSeconds:F2} s)  peak RSS {r.PeakGiB,5:F2} GiB  (after load {r.RssAfterLoadGiB:F2} GiB){(r.Note.Length > 0 ? "  " + r.Note : "")}");
        }

        Console.WriteLine();
        foreach (var dtype in results.GroupBy(r => r.DType)) Console.WriteLine($"frozen weights (UNet + text encoder + VAE) in {dtype.Key}: {dtype.First().WeightsGiB:F2} GiB");
        Console.WriteLine();
        Console.WriteLine("| what | dtype | gradient checkpointing | oneDNN | time per step | peak RSS | RSS after loading |");
        Console.WriteLine("|---|---|---|---|---:|---:|---:|");
        foreach (var r in results)
            Console.WriteLine($"| {(r.What == "train" ? "C-LoRA training step" : $"sampling, {r.Steps} steps")} | {r.DType} | {(r.What == "sample" ? "n/a" : r.Checkpointing ? "on" : "off")} | {(r.OneDnn ? "on" : "off")} | {r.SecondsPerStep:F2} s | {r.PeakGiB:F2} GiB | {r.RssAfterLoadGiB:F2} GiB |");
        Ratio(results, "train", "bf16", false, "fp32", false, "training step peak, bf16 / fp32");
        Ratio(results, "train", "fp32", true, "fp32", false, "training step peak, checkpointing / without (fp32)");
        Ratio(results, "train", "bf16", true, "bf16", false, "training step peak, checkpointing / without (bf16)");
        var on = results.FirstOrDefault(r => r.What == "train" && r.DType == "fp32" && !r.Checkpointing && r.OneDnn);
        var off = results.FirstOrDefault(r => r.What == "train" && r.DType == "fp32" && !r.OneDnn);
        if (on is not null && off is not null)
            Console.WriteLine($"fp32 training step with oneDNN on / off: {on.SecondsPerStep:F2} s / {off.SecondsPerStep:F2} s = {on.SecondsPerStep / off.SecondsPerStep:F2}");
        var w32 = results.FirstOrDefault(r => r.DType == "fp32"); var w16 = results.FirstOrDefault(r => r.DType == "bf16");
        if (w32 is not null && w16 is not null) Console.WriteLine($"frozen weights, bf16 / fp32: {w16.WeightsGiB / w32.WeightsGiB:F2}");
        return 0;
    }

    private static void Ratio(List<Result> results, string what, string dtypeA, bool ckptA, string dtypeB, bool ckptB, string label)
    {
        var a = results.FirstOrDefault(r => r.What == what && r.DType == dtypeA && r.Checkpointing == ckptA && r.OneDnn);
        var b = results.FirstOrDefault(r => r.What == what && r.DType == dtypeB && r.Checkpointing == ckptB && r.OneDnn);
        if (a is not null && b is not null)
            Console.WriteLine($"{label}: {a.PeakGiB:F2} / {b.PeakGiB:F2} GiB = {a.PeakGiB / b.PeakGiB:F2} (growth over the loaded model: {(a.PeakGiB - a.RssAfterLoadGiB):F2} / {(b.PeakGiB - b.RssAfterLoadGiB):F2} GiB = {(a.PeakGiB - a.RssAfterLoadGiB) / (b.PeakGiB - b.RssAfterLoadGiB):F2}); time per step {a.SecondsPerStep / b.SecondsPerStep:F2}×");
    }

    private static string Describe(Case c) =>
        $"{c.What} {c.DType}{(c.What == "train" ? $", checkpointing {(c.Checkpointing ? "on" : "off")}" : "")}{(c.OneDnn ? "" : ", oneDNN off")}";

    private static Result RunChild(Case c, string[] parentArgs)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(typeof(MemoryBenchmark).Assembly.Location);
        psi.ArgumentList.Add("memory-worker");
        foreach (var a in parentArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "--what", c.What, "--dtype", c.DType, "--checkpointing", c.Checkpointing ? "on" : "off", "--onednn", c.OneDnn ? "on" : "off" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var lastErrors = new Queue<string>(); // the worker's log (retries, dropped steps, why it stopped)
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            Console.Error.WriteLine($"  [{Describe(c)}] {e.Data}");
            lock (lastErrors) { lastErrors.Enqueue(e.Data); if (lastErrors.Count > 3) lastErrors.Dequeue(); }
        };
        p.BeginErrorReadLine();
        string? line, result = null;
        while ((line = p.StandardOutput.ReadLine()) is not null)
            if (line.StartsWith(ResultPrefix, StringComparison.Ordinal)) result = line[ResultPrefix.Length..];
        p.WaitForExit();
        if (p.ExitCode != 0 || result is null)
            throw new InvalidOperationException($"{Describe(c)}: the worker exited with {p.ExitCode} and no result; its last log lines: {string.Join(" | ", lastErrors)}");
        return JsonSerializer.Deserialize<Result>(result)!;
    }

    /// The child: one configuration, one JSON line.
    public static int Worker(string[] args)
    {
        var o = Options("memory-worker", args, "what", "dtype", "checkpointing", "onednn");
        TorchSetup.Initialize();
        if (o["onednn"] == "off") TorchSetup.UseTrainingSafeKernels();
        var precision = ComputePrecision.Parse(o["dtype"], vaeFp32: false, torch.CPU);
        bool checkpointing = o["checkpointing"] == "on";
        int resolution = int.Parse(o["resolution"], CultureInfo.InvariantCulture);
        using var model = TrainBenchmark.Build(o["model-config"], o["tokenizer"], precision);
        double weights = new nn.Module[] { model.Unet, model.TextEncoder, model.Vae }
            .Sum(m => m.parameters().Sum(p => p.numel() * p.element_size())) / Math.Pow(1024, 3);
        var times = new List<double>();
        string note = "";
        double afterLoad, peak;
        if (o["what"] == "train")
        {
            model.Unet.GradientCheckpointing = checkpointing;
            using var scope = torch.NewDisposeScope();
            using var latents = ConceptLatents.Encode(model.Vae, torch.rand(2, 3, resolution, resolution).Times(2).Minus(1), withFlips: false, batchSize: 1);
            long id = model.Tokenizer.AddConceptToken("<v1>");
            model.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
            var zeros = LoraInjector.BaseWeights(model.CrossAttentionKeyValueTargets()).ToDictionary(kv => kv.Key, kv => torch.zeros_like(kv.Value));
            using var trainer = new TaskTrainer(model, latents, "<v1>", id, zeros, new TrainingConfig { Steps = 100, Rank = 4, BatchSize = 1, Seed = 0 }, 1,
                info: m => Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {m}"));
            afterLoad = ResetPeak();
            int steps = int.Parse(o["train-steps"], CultureInfo.InvariantCulture);
            for (int s = 0; s < steps; s++)
            {
                times.Add(trainer.TrainStep().StepSeconds);
                Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} step {s + 1}: {times[^1]:F1} s");
            }
            peak = Kb("VmHWM");
            if (trainer.RetriedSteps > 0 || trainer.SkippedSteps > 0)
                note = $"{trainer.RetriedSteps} step(s) computed again{(precision.IsHalf ? "" : " with oneDNN off")}" + (trainer.SkippedSteps > 0 ? $", {trainer.SkippedSteps} dropped" : "");
        }
        else
        {
            using var scope = torch.NewDisposeScope();
            afterLoad = ResetPeak();
            int steps = int.Parse(o["sample-steps"], CultureInfo.InvariantCulture);
            var clock = Stopwatch.StartNew();
            double last = 0;
            var request = new SampleRequest { Prompt = "a photo of a cat", NegativePrompt = "", Scheduler = "ddim", Steps = steps, Guidance = 7.5, Height = resolution, Width = resolution, Seed = 0 };
            using var image = new TextToImagePipeline(model).Generate(request, latentsAfterStep: _ => { times.Add(clock.Elapsed.TotalSeconds - last); last = clock.Elapsed.TotalSeconds; });
            peak = Kb("VmHWM");
            if (!image.isfinite().all().item<bool>()) note = "image not finite";
        }
        var steady = times.Skip(1).DefaultIfEmpty(times[0]).ToList();
        var result = new Result(o["what"], o["dtype"], checkpointing, o["onednn"] == "on", weights, afterLoad / Math.Pow(1024, 2), peak / Math.Pow(1024, 2),
            steady.Average(), times[0], times.Count, note);
        Console.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        return 0;
    }

    /// Resets the kernel's peak-RSS mark (Linux: "5" to /proc/self/clear_refs); returns the current RSS in kB.
    private static double ResetPeak()
    {
        GC.Collect();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Kb("VmRSS");
    }

    private static double Kb(string field)
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return line is null ? double.NaN : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    /// The options with their defaults filled in, checked (BenchOptions); the worker also takes the case's own four.
    private static Dictionary<string, string> Options(string command, string[] args, params string[] workerOptions)
    {
        var b = BenchOptions.Parse(command, args, ["model-config", "tokenizer", "resolution", "train-steps", "sample-steps", "only", .. workerOptions]);
        string Number(string name, int fallback) => b.Int(name, fallback).ToString(CultureInfo.InvariantCulture);
        return new Dictionary<string, string>
        {
            ["model-config"] = b.Text("model-config", "configs/models/sd15.json"), ["tokenizer"] = b.Text("tokenizer", "tests/fixtures/sd-tiny/tokenizer"),
            ["resolution"] = Number("resolution", 512), ["train-steps"] = Number("train-steps", 3), ["sample-steps"] = Number("sample-steps", 30),
            ["only"] = b.OneOf("only", "all", "all", "train", "sample"),
            ["what"] = b.OneOf("what", "train", "train", "sample"), ["dtype"] = b.Text("dtype", "fp32"),
            ["checkpointing"] = b.OneOf("checkpointing", "off", "on", "off"), ["onednn"] = b.OneOf("onednn", "on", "on", "off"),
        };
    }
}
