using System.CommandLine;
using System.Diagnostics;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Interop.Import;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Schedulers;
using Serilog;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff sample`: text to image with a base model (--model) or a run's learned concepts (--run).
internal static class SampleCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var model = CommonOptions.Model("A diffusers-format Stable Diffusion folder, or an original-LDM single-file .safetensors (SD 1.x/2.x, as A1111 and ComfyUI keep them). With --run: where the run's base model is now (its hash must match).");
        var originalConfig = CommonOptions.OriginalConfig();
        var predictionType = CommonOptions.PredictionType();
        var run = new Option<DirectoryInfo?>("--run") { Description = $"A run directory: sample with every learned concept token (<v1>, <v2>, ...). Default without --model: ./{CommonOptions.DefaultRunDir}, as for train and status." };
        var prompt = new Option<string?>("--prompt") { Description = "What to draw, e.g. \"<v3> portrait\"." };
        var promptFile = new Option<FileInfo?>("--prompt-file") { Description = "Instead of --prompt: a text file of prompts, one per line (blank lines and # comments skipped), all drawn with one model load and the same seed." };
        var negative = new Option<string>("--negative-prompt") { Description = "What to steer away from.", DefaultValueFactory = _ => "" };
        var steps = new Option<int>("--steps") { Description = "Denoising steps.", DefaultValueFactory = _ => 30 };
        var guidance = new Option<double>("--guidance") { Description = "Classifier-free guidance scale.", DefaultValueFactory = _ => 7.5 };
        var guidanceRescale = new Option<double>("--guidance-rescale") { Description = "Guidance rescale φ from 0 to 1 (Lin et al. 2024, diffusers' guidance_rescale): pulls over-exposed samples at high guidance back; 0 = off.", DefaultValueFactory = _ => 0 };
        var scheduler = new Option<string?>("--scheduler") { Description = "ddim, dpm++ or euler (default: the model's scheduler_config.json)." };
        scheduler.AcceptOnlyFromAmong([.. SchedulerFactory.Names]);
        var seed = new Option<long?>("--seed") { Description = "Random seed (default: a random one, printed and stored in the PNG)." };
        var numImages = new Option<int>("--num-images") { Description = "Images to generate.", DefaultValueFactory = _ => 1 };
        var height = new Option<int?>("--height") { Description = "Image height in pixels, a multiple of 8 (default: the model's native size)." };
        var width = new Option<int?>("--width") { Description = "Image width in pixels, a multiple of 8 (default: the model's native size)." };
        var latents = new Option<FileInfo?>("--latents") { Description = "A safetensors file with a tensor 'latents' (N, 4, H/f, W/f) as the initial noise (scaled by init_noise_sigma, as diffusers does)." };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder for the PNG files.", DefaultValueFactory = _ => new DirectoryInfo("samples") };
        var loras = new Option<string[]>(LoraSpec.Option) { Description = "Another tool's LoRA (kohya lora_unet_/lora_te_ or diffusers unet./text_encoder. safetensors) merged into the model at SCALE (default 1); repeatable. With --run: on top of the run's concepts." };
        var embeddings = new Option<string[]>(EmbeddingSpec.Option) { Description = "A textual-inversion embedding (A1111 emb_params or diffusers {token: vector} safetensors) typed as WORD (default: the file's stem, or its token); repeatable. An n-vector embedding's WORD stands for all n." };
        var ignoreUnknown = new Option<bool>("--lora-ignore-unknown") { Description = "Skip keys of a --lora file that are not LoRA keys of this model (an error otherwise)." };

        var device = CommonOptions.Device();
        var dtype = CommonOptions.DType();
        var vaeFp32 = CommonOptions.VaeFp32();
        var cmd = new Command("sample", "Generate images from a prompt with a base model or a run's learned concepts.")
        {
            model, originalConfig, predictionType, run, prompt, promptFile, negative, steps, guidance, guidanceRescale, scheduler, seed, numImages, height, width, latents, output,
            loras, embeddings, ignoreUnknown, device, dtype, vaeFp32,
        };
        cmd.SetAction(parse =>
        {
            var (computeDevice, precision) = CommonOptions.Compute(parse, device, dtype, vaeFp32);
            var modelPath = CommonOptions.FullPath(parse.GetValue(model));
            var singleFile = CommonOptions.SingleFile(parse, originalConfig, predictionType);
            var runDir = parse.GetValue(run);
            if (modelPath is null && runDir is null) runDir = DefaultRun(); // like train and status: ./cdiff-run
            var prompts = Prompts(parse.GetValue(prompt), parse.GetValue(promptFile)?.FullName);
            long seedValue = parse.GetValue(seed) ?? Random.Shared.NextInt64(0, int.MaxValue);
            // Checked before the model loads: files exist, are not pickles, SCALE is a number, WORD a word.
            var loraSpecs = (parse.GetValue(loras) ?? []).Select(LoraSpec.Parse).ToList();
            var embeddingSpecs = (parse.GetValue(embeddings) ?? []).Select(EmbeddingSpec.Parse).ToList();

            var clock = Stopwatch.StartNew();
            using var sd = runDir is not null
                ? RunModel.LoadForSampling(new RunDirectory(runDir.FullName), modelPath, computeDevice, singleFile, precision)
                : StableDiffusion.Open(modelPath!, singleFile, computeDevice, precision);
            Log.Information("Loaded the model in {Seconds:F1} s", clock.Elapsed.TotalSeconds);
            if (loraSpecs.Count > 0 || embeddingSpecs.Count > 0)
                foreach (var line in ForeignAdditions.Apply(sd, loraSpecs, embeddingSpecs, parse.GetValue(ignoreUnknown)))
                    Log.Information("{Addition}", line);

            if (prompts.Count > 1) // every line checked before the first image, not after an hour of sampling
                for (int k = 0; k < prompts.Count; k++)
                {
                    try { sd.Tokenizer.ThrowIfUnknownConceptTokens(prompts[k]); }
                    catch (InputException e) { throw new InputException($"--prompt-file {parse.GetValue(promptFile)!.FullName}: prompt {k + 1} (\"{prompts[k]}\"): {e.Message}"); }
                }
            using var initialLatents = parse.GetValue(latents) is { } lf ? ReadLatents(lf.FullName) : null;
            var outDir = parse.GetValue(output)!.FullName;
            for (int k = 0; k < prompts.Count; k++)
            {
                var request = new SampleRequest
                {
                    Prompt = prompts[k],
                    NegativePrompt = parse.GetValue(negative)!,
                    Steps = parse.GetValue(steps),
                    Guidance = parse.GetValue(guidance),
                    GuidanceRescale = parse.GetValue(guidanceRescale),
                    Scheduler = parse.GetValue(scheduler),
                    Seed = seedValue,
                    NumImages = parse.GetValue(numImages),
                    Height = parse.GetValue(height),
                    Width = parse.GetValue(width),
                    Latents = initialLatents,
                };
                var schedulerName = request.Scheduler ?? SchedulerFactory.DefaultName(sd.SchedulerConfig);
                var bar = new ProgressBar(prompts.Count == 1 ? "sampling" : $"prompt {k + 1}/{prompts.Count}", request.Steps, stderr);
                var progress = new SyncProgress<SampleProgress>(p =>
                {
                    bar.Report(p.Step, $"({p.StepSeconds:F2} s/step)");
                    Log.Debug("Step {Step}/{Total} took {Seconds:F3} s", p.Step, p.TotalSteps, p.StepSeconds);
                });
                clock.Restart();
                using var images = new TextToImagePipeline(sd).Generate(request, progress, w => Log.Warning("{Warning}", w), cancel());
                Log.Information("Sampled {Count} image(s) in {Seconds:F1} s", request.NumImages, clock.Elapsed.TotalSeconds);

                var text = new Dictionary<string, string>
                {
                    ["prompt"] = request.Prompt, ["negative_prompt"] = request.NegativePrompt, ["seed"] = seedValue.ToString(),
                    ["steps"] = request.Steps.ToString(), ["guidance"] = request.Guidance.ToString("R"), ["guidance_rescale"] = request.GuidanceRescale.ToString("R"), ["scheduler"] = schedulerName,
                    ["model"] = runDir?.FullName ?? modelPath!, ["software"] = "cdiff",
                };
                if (loraSpecs.Count > 0) text["lora"] = string.Join("; ", loraSpecs);
                if (embeddingSpecs.Count > 0) text["embedding"] = string.Join("; ", embeddingSpecs);
                for (int i = 0; i < request.NumImages; i++)
                {
                    // a prompt file's images carry the prompt's line number among the prompts: 5-p002-00.png
                    var path = FreePath(outDir, prompts.Count == 1 ? $"{seedValue}-{i:D2}" : $"{seedValue}-p{k + 1:D3}-{i:D2}");
                    using var img = images[i];
                    PngFile.Save(img, path, text);
                    stdout.WriteLine(path);
                }
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// The prompts to draw: --prompt's, or --prompt-file's lines (exactly one of the two).
    private static IReadOnlyList<string> Prompts(string? prompt, string? file)
    {
        if (prompt is not null && file is not null) throw new InputException("--prompt and --prompt-file: give one of them");
        if (file is not null) return PromptFile.Read(file);
        if (prompt is null) throw new InputException("--prompt TEXT (or --prompt-file FILE) is required");
        return [prompt];
    }

    private static TorchSharp.torch.Tensor ReadLatents(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        if (!f.Tensors.ContainsKey("latents")) throw new InputException($"{path}: no tensor named 'latents' (found: {string.Join(", ", f.Tensors.Keys)})");
        return f.Read("latents");
    }

    /// Never overwrite an image the user already has.
    private static string FreePath(string dir, string stem)
    {
        var path = Path.Combine(dir, stem + ".png");
        for (int k = 1; File.Exists(path); k++) path = Path.Combine(dir, $"{stem}-{k}.png");
        return path;
    }

    /// ./cdiff-run when it holds a run; otherwise the error says what to pass.
    private static DirectoryInfo DefaultRun()
    {
        var dir = new DirectoryInfo(CommonOptions.DefaultRunDir);
        if (File.Exists(Path.Combine(dir.FullName, RunDirectory.ManifestName))) return dir;
        throw new InputException($"no --run or --model given and {dir.FullName} holds no run: train one with `cdiff train --task 1 --images DIR --model MODEL`, or pass --run DIR or --model DIR|FILE");
    }
}

/// IProgress that reports on the calling thread (Progress<T> would post to the thread pool and reorder lines).
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);

}
