using System.Diagnostics;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// What `cdiff train` asks for.
public sealed record TrainTaskRequest
{
    public required int Task { get; init; }
    public required string ImagesDir { get; init; }
    public required string RunDir { get; init; }
    /// Required at task 1 (a diffusers folder or an original-LDM single file); later tasks use the run's base model
    /// (a given path must hash the same).
    public string? ModelPath { get; init; }
    /// What a single-file model's weights cannot say (`--original-config`, `--prediction-type`). Recorded in the
    /// manifest at task 1, so later tasks need them only when the yaml has moved.
    public SingleFileOptions? SingleFile { get; init; }
    public required TrainingConfig Config { get; init; }
    public bool Resume { get; init; }
    public bool Overwrite { get; init; }
    /// Write a validation sample every N steps into the run's samples/ folder (0 = never).
    public int SampleEvery { get; init; }
    /// The validation samples' prompt; "{}" stands for the task's token (null = "a photo of {}").
    public string? SamplePrompt { get; init; }
    public Device? Device { get; init; }

    /// The frozen weights' dtype (--dtype); what trains and every file written stay float32.
    public ComputePrecision? Precision { get; init; }

    /// Recompute the UNet blocks' activations in backward (--gradient-checkpointing): same result, less memory.
    public bool GradientCheckpointing { get; init; }
}

public sealed record TrainTaskResult(TaskEntry Entry, string AdapterPath, double MeanStepSeconds);

/// One continual-customization task, from files to files: validates the request against the run, loads the
/// base model with the earlier tasks' tokens and summed deltas, trains (TaskTrainer), and commits the adapter
/// and the manifest entry — atomically, and only after the last step ended with a finite loss. An error,
/// a NaN, Ctrl-C or a kill leave the run's committed state exactly as it was.
public static class ContinualTraining
{
    private const string CheckpointFile = "state.safetensors";

    public static TrainTaskResult TrainTask(TrainTaskRequest r, Action<TrainStepReport>? progress = null,
        Action<string>? warn = null, CancellationToken cancel = default)
    {
        var config = r.Config.Validated("training options");
        if (r.Config.BucketStep is not null && r.Config.AspectBuckets != true)
            warn?.Invoke($"--bucket-step {r.Config.BucketStep} is used only with --aspect-buckets; the images are centre-cropped squares");
        if (r.SampleEvery < 0) throw new InputException($"--sample-every {r.SampleEvery}: must be >= 0 (0 = never)");
        if (r.SamplePrompt is { } prompt && string.IsNullOrWhiteSpace(prompt)) throw new InputException("--sample-prompt: must not be empty");
        if (config.LrWarmupSteps is { } warmup && warmup >= config.Steps)
            warn?.Invoke($"learning-rate warm-up of {warmup} steps is not shorter than the task's {config.Steps} steps: the rates never reach their values");
        var run = new RunDirectory(r.RunDir);
        // One scope for the whole task (Runtime/TensorOwnership): whatever temporaries the steps below make
        // outside their own scopes stay owned until the task ends; nothing it returns is a tensor.
        using var taskScope = torch.NewDisposeScope();
        using var runLock = RunLock.Acquire(run.Root, warn);
        var manifest = run.TryReadManifest();
        var (source, baseModel) = ResolveBaseModel(r, manifest);
        using var sourceScope = source;
        string baseHash = baseModel.Hash;
        CheckTaskNumber(r, manifest, config);

        int resolution = config.Resolution ?? source.NativeResolution();
        var buckets = Buckets(config, resolution, warn);
        using var images = ImageFolder.Load(r.ImagesDir, resolution, config.MaxImagePixels, warn, readCaptions: true, buckets);
        if (buckets is not null)
            warn?.Invoke($"task {r.Task}: {images.Count} image(s) in {(images.Groups.Count == 1 ? "1 aspect bucket" : $"{images.Groups.Count} aspect buckets")}: " +
                string.Join(", ", images.Groups.Select(g => $"{g.Width}x{g.Height} ({g.Indices.Count})")));
        if (images.Captions is { } captions)
        {
            int n = captions.Count(c => c is not null);
            warn?.Invoke($"task {r.Task}: {n} of {images.Count} image(s) have a caption ({ImageFolder.CaptionExtension}){(n < images.Count ? "; the others use the prompt templates" : "")}");
        }
        if (r.SamplePrompt is not null && r.SampleEvery == 0) warn?.Invoke("--sample-prompt is used only with --sample-every N; no validation samples will be written");
        var clock = Stopwatch.StartNew();
        using var model = StableDiffusion.Load(source, r.Device, r.Precision);
        model.Unet.GradientCheckpointing = r.GradientCheckpointing;

        // Earlier tasks: their tokens (frozen) and, composed as the method composes them, each layer's frozen past delta.
        var pastAdapters = manifest is null ? [] : RunModel.LoadAdapters(run, manifest, model, r.Task - 1);
        Dictionary<string, Tensor>? past;
        try
        {
            foreach (var a in pastAdapters) model.AddConcept(a.Metadata.Token, a.TokenEmbedding);
            past = TaskComposition.ForTraining(ContinualMethod.Parse(config.Method), RunModel.BaseWeights(model), pastAdapters);
        }
        finally { foreach (var a in pastAdapters) a.Dispose(); }

        if (ContinualMethod.Parse(config.Method).Composition == PastComposition.ClosedFormMerge
            && r.Task > TaskComposition.MaxMergedConcepts(model.TextEncoder.HiddenSize))
            throw new InputException($"--task {r.Task}: custom-diffusion-merge can merge at most {TaskComposition.MaxMergedConcepts(model.TextEncoder.HiddenSize)} concepts on this model " +
                $"({MergeFeatures.RowsPerConcept} text features each, text width {model.TextEncoder.HiddenSize}); start a new run");
        var token = Text.ConceptTokens.Name(r.Task);
        long tokenId = model.Tokenizer.AddConceptToken(token);
        using (var g = new Generator(unchecked((ulong)(config.Seed * 31 + r.Task))))
            model.TextEncoder.ResizeTokenEmbeddings((int)tokenId + 1, g); // random init, not a word's embedding

        CheckCaptionsKeepTheToken(model, images.Captions, token, tokenId);
        using var latents = ConceptLatents.Encode(model.Vae, images.Groups, images.Count, config.HorizontalFlip, model.Device);
        using var trainer = new TaskTrainer(model, latents, token, tokenId, past, config, r.Task, info: warn, captions: images.Captions?.Select(c => c?.Text).ToList());
        if (past is not null) foreach (var t in past.Values) t.Dispose();

        var checkpointPath = Path.Combine(run.CheckpointDir(r.Task), CheckpointFile);
        var checkpointIdentity = CheckpointIdentity(r.Task, baseHash, images.SetHash, config, r.Precision);
        ResumeIfAsked(r, trainer, checkpointPath, checkpointIdentity, warn);
        using var log = TrainingLog.Open(run.TrainingLogInProgressPath(r.Task), config, r.Resume ? trainer.Step : null);

        var stepTimes = new List<double>();
        double finalLoss = trainer.Run(report =>
        {
            stepTimes.Add(report.StepSeconds);
            log.Append(report);
            progress?.Invoke(report);
            if (config.CheckpointEvery > 0 && report.Step % config.CheckpointEvery == 0 && report.Step < config.Steps)
            {
                using var scope = torch.NewDisposeScope(); // the step counters CheckpointTensors makes
                SafeTensorsFile.Save(checkpointPath, trainer.CheckpointTensors(), new Dictionary<string, string> { ["identity"] = checkpointIdentity }, checksum: true);
            }
            if (r.SampleEvery > 0 && report.Step % r.SampleEvery == 0)
                WriteValidationSample(model, trainer, (r.SamplePrompt ?? DefaultSamplePrompt).Replace("{}", token), run.SamplesDir(r.Task), report.Step, config.Seed);
        }, cancel);

        var entry = Commit(run, manifest, r, config, trainer, token, tokenId, baseModel, images, resolution, finalLoss, clock.Elapsed.TotalSeconds);
        // The task is committed: a log that cannot be moved (a full disk, permissions) is worth a warning, not a failure.
        try { log.Commit(run.TrainingLogPath(r.Task)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { warn?.Invoke($"{run.TrainingLogPath(r.Task)}: the training log was not written ({e.Message})"); }
        TryDeleteDirectory(run.CheckpointDir(r.Task));
        return new TrainTaskResult(entry, Path.Combine(run.Root, entry.AdapterFile), stepTimes.Count == 0 ? 0 : stepTimes.Average());
    }

    /// The aspect buckets at this resolution, or null without --aspect-buckets.
    private static AspectBuckets? Buckets(TrainingConfig config, int resolution, Action<string>? warn)
    {
        if (config.AspectBuckets != true) return null;
        int step = config.BucketStep ?? TrainingConfig.DefaultBucketStep;
        if (resolution % step != 0)
        {
            // The largest step (up to the default's) that divides the resolution and leaves more than the square bucket.
            int fits = Enumerable.Range(1, TrainingConfig.DefaultBucketStep / 8).Select(k => 8 * k).LastOrDefault(s => resolution % s == 0 && s <= resolution / 2);
            throw new InputException($"--bucket-step {step}: the training resolution ({resolution} px) must be a multiple of it (" +
                (fits > 0 ? $"pass --bucket-step {fits} or a --resolution that is a multiple of {step})" : $"pass a --resolution that is a multiple of {step})"));
        }
        var buckets = new AspectBuckets(resolution, step);
        if (buckets.Sizes.Count == 1)
            warn?.Invoke($"--bucket-step {step} at {resolution} px leaves only the square bucket; a smaller step gives other aspect ratios");
        return buckets;
    }

    /// The base model and how the manifest describes it: at task 1 the model given (its hash and single-file options
    /// become the run's), later the run's own (reopened as task 1 opened it; a given path must hash the same).
    private static (BaseModelSource Source, BaseModelInfo Info) ResolveBaseModel(TrainTaskRequest r, RunManifest? manifest)
    {
        if (manifest is null)
        {
            if (r.ModelPath is null) throw new InputException("--model is required for the first task of a run (a diffusers-format Stable Diffusion folder or a single-file .safetensors checkpoint)");
            var source = BaseModelSource.Open(r.ModelPath, r.SingleFile);
            try { return (source, BaseModelInfo.Of(source, source.ComputeIdentityHash())); }
            catch
            {
                source.Dispose();
                throw;
            }
        }
        return (RunModel.OpenBaseModel(manifest, r.ModelPath, r.SingleFile, new RunDirectory(r.RunDir).ManifestPath), manifest.BaseModel);
    }

    private static void CheckTaskNumber(TrainTaskRequest r, RunManifest? manifest, TrainingConfig config)
    {
        int last = manifest?.LastTask ?? 0;
        if (r.Task < 1) throw new InputException($"--task {r.Task}: task numbers start at 1");
        if (r.Task > last + 1)
            throw new InputException(last == 0
                ? $"--task {r.Task}: this run has no tasks yet; tasks are sequential, start with --task 1"
                : $"--task {r.Task}: tasks are sequential and this run has tasks 1..{last}; train task {last + 1} next");
        if (r.Task <= last)
        {
            if (r.Task < last)
                throw new InputException($"--task {r.Task}: only the last task ({last}) can be retrained; later tasks were trained against task {r.Task}'s adapter");
            if (!r.Overwrite)
                throw new InputException($"--task {r.Task}: this task is already trained; pass --overwrite to retrain it");
        }
        if (manifest is not null && manifest.Method != config.Method)
            throw new InputException($"--method {config.Method}: this run uses '{manifest.Method}'; start a new --run to compare methods");
    }

    /// What a checkpoint must have been made with to be resumed. The frozen weights' precision is part of it (the
    /// steps after a resume would not be the ones an uninterrupted task takes); fp32 adds nothing, so checkpoints
    /// written before --dtype existed still resume. Device and gradient checkpointing are not: same arithmetic.
    private static string CheckpointIdentity(int task, string baseHash, string imageSetHash, TrainingConfig config, ComputePrecision? precision)
    {
        var identity = JsonSerializer.Serialize(new { task, baseHash, imageSetHash, config = Configuration.JsonConfig.Serialize(config) });
        return PrecisionOf(precision) == "fp32" ? identity : identity + PrecisionMark + PrecisionOf(precision);
    }

    private const string PrecisionMark = " dtype=";

    /// As the options say it: "fp32", "bf16", "bf16 --vae-fp32" (after "--dtype "). A bf16 checkpoint written before the
    /// dtype joined the identity (the same day --dtype came) reads as fp32.
    private static string PrecisionOf(ComputePrecision? p) =>
        p is null || !p.IsHalf ? "fp32" : p.Name + (p.VaeFp32 ? " --vae-fp32" : "");

    private static (string Options, string Precision) SplitIdentity(string identity)
    {
        int at = identity.LastIndexOf(PrecisionMark, StringComparison.Ordinal);
        return at > identity.LastIndexOf('}') ? (identity[..at], identity[(at + PrecisionMark.Length)..]) : (identity, "fp32");
    }

    private static void ResumeIfAsked(TrainTaskRequest r, TaskTrainer trainer, string checkpointPath, string identity, Action<string>? warn)
    {
        bool exists = File.Exists(checkpointPath);
        if (!r.Resume)
        {
            if (exists) warn?.Invoke($"{checkpointPath}: an interrupted run of task {r.Task} exists; starting over (pass --resume to continue it)");
            return;
        }
        if (!exists) throw new InputException($"--resume: task {r.Task} has no checkpoint to resume ({checkpointPath} not found)");
        using var f = SafeTensorsFile.Open(checkpointPath);
        if (!f.Metadata.TryGetValue("identity", out var saved) || saved != identity)
        {
            var (savedRest, savedPrecision) = saved is null ? ("", "") : SplitIdentity(saved);
            var (rest, precision) = SplitIdentity(identity);
            if (saved is not null && savedRest == rest)
                throw new InputException($"--resume: {checkpointPath} was trained with --dtype {savedPrecision}, not --dtype {precision}; resume with --dtype {savedPrecision}, or without --resume to start over");
            throw new InputException($"--resume: {checkpointPath} was made with other images, base model or options; rerun with the same ones, or without --resume to start over");
        }
        f.VerifyChecksum();
        var tensors = f.ReadAll();
        try { trainer.RestoreCheckpoint(tensors, checkpointPath); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// The commit point: adapter file (new name, so an --overwrite never touches the old file before the
    /// manifest points elsewhere), then the manifest; the replaced adapter is deleted last.
    private static TaskEntry Commit(RunDirectory run, RunManifest? manifest, TrainTaskRequest r, TrainingConfig config, TaskTrainer trainer,
        string token, long tokenId, BaseModelInfo baseModel, ConceptImages images, int resolution, double finalLoss, double seconds)
    {
        if (!double.IsFinite(finalLoss)) throw new TrainingDivergedException($"task {r.Task}: final loss {finalLoss}; nothing was written");
        AdapterMethods.TryParse(config.Method, out var method);
        var adapterPath = Path.Combine(run.AdaptersDir, $"task-{r.Task:D3}-{DateTime.UtcNow:yyyyMMddHHmmssfff}.safetensors");
        using (var adapter = trainer.ToAdapterSet(new AdapterMetadata(r.Task, token, config.EffectiveRank, method, baseModel.Hash)))
            AdapterFile.Save(adapterPath, adapter);

        var entry = new TaskEntry
        {
            Task = r.Task, Token = token, TokenId = tokenId,
            AdapterFile = Path.GetRelativePath(run.Root, adapterPath),
            AdapterSha256 = RunDirectory.Sha256File(adapterPath),
            AdapterBytes = new FileInfo(adapterPath).Length,
            ImageSetHash = images.SetHash, ImageCount = images.Count,
            Method = config.Method, Rank = config.EffectiveRank, Lambda = config.EffectiveLambda, Steps = config.Steps,
            LearningRate = config.LearningRate, Seed = config.Seed, FinalLoss = finalLoss, WallTimeSeconds = seconds,
            FinishedUtc = DateTimeOffset.UtcNow, RetriedSteps = trainer.RetriedSteps, DroppedSteps = trainer.SkippedSteps,
            Training = TaskRecipe.Of(config, resolution, images.Captions?.Count(c => c is not null) ?? 0, r.Precision, r.GradientCheckpointing),
        };
        var updated = manifest is null
            ? new RunManifest { BaseModel = baseModel, Method = config.Method, Tasks = [] }
            : manifest with { Tasks = [.. manifest.Tasks.Where(t => t.Task != r.Task)] };
        var replaced = manifest?.Tasks.FirstOrDefault(t => t.Task == r.Task);
        updated.Tasks.Add(entry);
        run.WriteManifest(updated);
        if (replaced is not null && replaced.AdapterFile != entry.AdapterFile)
            TryDelete(Path.Combine(run.Root, replaced.AdapterFile));
        return entry;
    }

    private const string DefaultSamplePrompt = "a photo of {}";

    /// The text encoder reads 77 tokens: a caption whose {} comes later would train its image without the new token.
    private static void CheckCaptionsKeepTheToken(StableDiffusion model, IReadOnlyList<Caption?>? captions, string token, long tokenId)
    {
        foreach (var c in captions ?? [])
        {
            if (c is null) continue;
            using var scope = torch.NewDisposeScope();
            if (!model.Tokenize([c.Text.Replace("{}", token)]).data<long>().Contains(tokenId))
                throw new InputException($"{c.File}: the caption's {{}} comes after the text encoder's {model.Tokenizer.ModelMaxLength} tokens, so the new token would be cut off; shorten the caption or move {{}} forward");
        }
    }

    private static void WriteValidationSample(StableDiffusion model, TaskTrainer trainer, string prompt, string dir, int step, long seed)
    {
        using var scope = torch.NewDisposeScope();
        model.TextEncoder.SetTokenEmbedding(trainer.TokenId, trainer.TokenEmbedding.detach());
        var image = new TextToImagePipeline(model).Generate(new SampleRequest { Prompt = prompt, Steps = 20, Seed = seed });
        PngFile.Save(image[0], Path.Combine(dir, $"step-{step:D5}.png"), new Dictionary<string, string> { ["prompt"] = prompt, ["step"] = step.ToString() });
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }

    private static void TryDeleteDirectory(string path)
    {
        try { if (Directory.Exists(path)) Directory.Delete(path, recursive: true); } catch (IOException) { }
    }
}
