using ContinualDiffusion.Runtime;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Text;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarks;

/// Times C-LoRA training steps (TaskTrainer, the code behind `cdiff train`) on an architecture from
/// configs/models/*.json with random weights: at task 1 (no past) and at task 5 (past deltas present), side by
/// side in one process, plus peak RSS and the adapter file size at the given ranks.
///
///   bench train --model-config configs/models/sd15.json --tokenizer DIR [--resolution 512] [--batch 1] [--steps 3] [--ranks 4,16] [--onednn on|off]
///   bench train --model models/fashion-base ...   (a real model folder instead of random weights)
internal static class TrainBenchmark
{
    public static int Run(string[] args)
    {
        var o = BenchOptions.Parse("train", args, "model-config", "tokenizer", "model", "resolution", "batch", "steps", "ranks", "onednn");
        // Random weights from an architecture file, unless --model gives a real model folder.
        string? modelDir = o.Get("model");
        string arch = modelDir ?? o.Required("model-config");
        string tokenizerDir = modelDir is null ? o.Required("tokenizer") : "";
        int steps = o.Int("steps", 3);
        int batch = o.Int("batch", 1);
        var ranks = o.Ints("ranks", "4,16");
        int? resolutionGiven = o.Has("resolution") ? o.Int("resolution", 0, min: 8) : null;
        Runtime.TorchSetup.Initialize();
        string oneDnn = OneDnn(o);

        var model = modelDir is not null
            ? StableDiffusion.Load(Checkpoints.DiffusersFolder.Open(modelDir))
            : Build(arch, tokenizerDir);
        int resolution = resolutionGiven ?? model.Unet.Config.SampleSize * model.VaeScaleFactor;
        Console.WriteLine($"{arch}: UNet {model.Unet.parameters().Sum(p => p.numel()):N0} params, {model.Unet.CrossAttentions().Count} cross-attentions; {resolution}x{resolution}, batch {batch}, oneDNN {oneDnn}, RSS {Rss("VmRSS")}");

        var images = torch.rand(Math.Max(batch, 2), 3, resolution, resolution).Times(2).Minus(1);
        using var latents = ConceptLatents.Encode(model.Vae, images, withFlips: false, batchSize: 1);
        var weights = LoraInjector.BaseWeights(model.CrossAttentionKeyValueTargets());

        foreach (int rank in ranks)
        {
            var config = new TrainingConfig { Steps = steps, Rank = rank, BatchSize = batch, Seed = 0 };
            foreach (int task in new[] { 1, 5 })
            {
                // Past deltas of tasks 1..task-1: dense and non-zero from task 2 on, as in a real run.
                var past = weights.ToDictionary(kv => kv.Key, kv => task == 1 ? torch.zeros_like(kv.Value) : torch.randn(kv.Value.shape).Times(1e-3f));
                long id = model.Tokenizer.TryGetConceptTokenId($"<v{task}>", out var known) ? known : model.Tokenizer.AddConceptToken($"<v{task}>");
                if (model.TextEncoder.VocabSize <= id) model.TextEncoder.ResizeTokenEmbeddings((int)id + 1);
                var trainer = new TaskTrainer(model, latents, $"<v{task}>", id, past, config, task);
                var times = new List<double>();
                for (int s = 0; s < steps; s++) times.Add(trainer.TrainStep().StepSeconds);
                var steady = times.Skip(1).DefaultIfEmpty(times[0]).ToList();
                Console.WriteLine($"rank {rank,2} task {task}: step {steady.Average():F3} s (min {steady.Min():F3}, first {times[0]:F3}), peak RSS {Rss("VmHWM")}");
                if (task == 5)
                {
                    var path = Path.Combine(Path.GetTempPath(), $"bench-adapter-{Guid.NewGuid():N}.safetensors");
                    using (var a = trainer.ToAdapterSet(new AdapterMetadata(task, $"<v{task}>", rank, AdapterMethod.CLora, "bench")))
                        AdapterFile.Save(path, a);
                    Console.WriteLine($"rank {rank,2}: adapter file {new FileInfo(path).Length:N0} bytes");
                    File.Delete(path);
                }
                trainer.Dispose();
                Restore(model, weights); // un-inject: the next configuration starts from plain Linears
                foreach (var t in past.Values) t.Dispose();
            }
        }
        return 0;
    }

    /// `--onednn on|off` (default on, as `cdiff train` runs): off turns oneDNN's kernels off for the whole process.
    internal static string OneDnn(BenchOptions o)
    {
        string value = o.OneOf("onednn", "on", "on", "off");
        if (value == "off") Runtime.TorchSetup.UseTrainingSafeKernels();
        return value;
    }

    /// Puts the original Linear back into every adapted projection.
    private static void Restore(StableDiffusion model, Dictionary<string, Tensor> _)
    {
        foreach (var (prefix, attention) in model.Unet.CrossAttentions())
            foreach (var name in new[] { "to_k", "to_v" })
            {
                var current = name == "to_k" ? attention.ToK : attention.ToV;
                if (current is ContinualLoraLinear l) attention.ReplaceProjection(name, l.Base);
            }
    }

    /// The architecture of configs/models/*.json with random weights, held in `precision` (default float32).
    internal static StableDiffusion Build(string architecturePath, string tokenizerDir, ComputePrecision? precision = null)
    {
        var root = JsonNode.Parse(File.ReadAllText(architecturePath))!.AsObject();
        var dir = Directory.CreateTempSubdirectory("bench-arch-").FullName;
        string Section(string name) { var p = Path.Combine(dir, name + ".json"); File.WriteAllText(p, root[name]!.ToJsonString()); return p; }
        torch.manual_seed(0);
        precision ??= ComputePrecision.Float32;
        var textEncoder = new ClipTextModel(ClipTextConfig.Load(Section("text_encoder")));
        var unet = new UNet2DConditionModel(UNetConfig.Load(Section("unet")));
        var vae = new AutoencoderKL(VaeConfig.Load(Section("vae")));
        StableDiffusion.Place(textEncoder, unet, vae, torch.CPU, precision);
        var model = new StableDiffusion
        {
            Tokenizer = ClipTokenizer.FromFolder(tokenizerDir),
            TextEncoder = textEncoder,
            Unet = unet,
            Vae = vae,
            SchedulerConfig = SchedulerConfig.Load(Section("scheduler")),
            Device = torch.CPU,
            Precision = precision,
        };
        Directory.Delete(dir, true);
        return model;
    }

    internal static string Rss(string field)
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        if (line is null) return "n/a";
        long kb = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        return $"{kb / 1024.0 / 1024.0:F2} GiB";
    }
}
