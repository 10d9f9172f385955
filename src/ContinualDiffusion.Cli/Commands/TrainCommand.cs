using System.CommandLine;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;
using Serilog;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff train --task 3 --images ./faces/p3`: learn concept <v3> as C-LoRA task 3 of a run.
internal static class TrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var task = new Option<int>("--task") { Description = "Task number: 1 for the first concept, then 2, 3, ... (learns token <vN>).", Required = true };
        var images = new Option<DirectoryInfo>("--images") { Description = "Folder of the concept's images (PNG, JPEG, WebP, BMP). Not kept after training.", Required = true };
        var run = CommonOptions.Run();
        var model = CommonOptions.Model("Base model: a diffusers-format folder or an original-LDM single-file .safetensors. Required at task 1, then remembered (with --original-config and --prediction-type).");
        var originalConfig = CommonOptions.OriginalConfig();
        var predictionType = CommonOptions.PredictionType();
        var config = new Option<FileInfo?>("--config") { Description = "Training options as JSON (keys as in configs/train/defaults.json); command-line options override it." };
        var method = new Option<string?>("--method")
        {
            Description = "clora (default: self-regularized C-LoRA), lora (λ = 0, sequential LoRA), textual-inversion (token only), "
                + "custom-diffusion (dense key/value weights, sequential), custom-diffusion-merge (each concept from the base model, closed-form merge), "
                + "magmax (LoRA, element-wise max-magnitude merge), ortho-init (LoRA, input factor orthogonal to the past) or "
                + "anchored-lora (LoRA penalised for changing the key/value outputs of past prompts and generic captions). Fixed per run.",
        };
        method.AcceptOnlyFromAmong([.. AdapterMethods.AllNames]);
        var steps = new Option<int?>("--steps") { Description = "Training steps for this task." };
        var lr = new Option<double?>("--lr") { Description = "Learning rate of the LoRA factors." };
        var tokenLr = new Option<double?>("--token-lr") { Description = "Learning rate of the new token's embedding." };
        var rank = new Option<int?>("--rank") { Description = "LoRA rank r." };
        var lambda = new Option<double?>("--lambda") { Description = "Weight λ of the penalty (clora: self-regularization; anchored-lora: text anchor)." };
        var batch = new Option<int?>("--batch-size") { Description = "Images per batch (a step sees batch size × --gradient-accumulation-steps images)." };
        var accumulation = new Option<int?>("--gradient-accumulation-steps") { Description = "Batches whose gradients are summed into one step: a larger effective batch at one batch's memory (default 1)." };
        var scheduler = new Option<string?>("--lr-scheduler") { Description = "Learning-rate schedule over the task's steps, as diffusers': constant (default), constant_with_warmup, linear or cosine (both rates)." };
        scheduler.AcceptOnlyFromAmong([.. LrScheduler.Names]);
        var snrGamma = new Option<double?>("--snr-gamma") { Description = "Min-SNR loss weighting with this gamma (5 is usual; default: off), as diffusers' --snr_gamma." };
        var noiseOffset = new Option<double?>("--noise-offset") { Description = "Offset noise scale (0.05-0.1 is usual; default: off): helps learn very dark or bright images." };
        var buckets = new Option<bool>("--aspect-buckets") { Description = "Aspect-ratio buckets, as kohya's --enable_bucket: each image is cropped to the bucket nearest its width:height (area at most resolution²) instead of a centred square." };
        var bucketStep = new Option<int?>("--bucket-step") { Description = "Side step of the aspect buckets in pixels (default 64; the resolution must be a multiple)." };
        var warmup = new Option<int?>("--lr-warmup-steps") { Description = "Warm-up steps of the schedule: the rate rises linearly from 0 (not with constant)." };
        var resolution = new Option<int?>("--resolution") { Description = "Training image side in pixels (default: the model's native size)." };
        var seed = new Option<long?>("--seed") { Description = "Random seed (same seed, same images, same options: same adapter)." };
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "Save a resumable checkpoint every N steps (0 = never)." };
        var sampleEvery = new Option<int>("--sample-every") { Description = "Write a validation sample into the run's samples/ folder every N steps (0 = never).", DefaultValueFactory = _ => 0 };
        var samplePrompt = new Option<string?>("--sample-prompt") { Description = "Prompt of the --sample-every images; {} stands for the new token (default: \"a photo of {}\")." };
        var resume = new Option<bool>("--resume") { Description = "Continue this task from its last checkpoint." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Retrain the run's last task, replacing its adapter." };
        var device = CommonOptions.Device();
        var dtype = CommonOptions.DType();
        var vaeFp32 = CommonOptions.VaeFp32();
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "Recompute the UNet blocks' activations in backward instead of keeping them: less memory, about one more forward per step, the same result." };

        var cmd = new Command("train", "Learn a new concept as the next C-LoRA task of a run.")
        {
            task, images, run, model, originalConfig, predictionType, config, method, steps, lr, tokenLr, rank, lambda, batch, accumulation, scheduler, warmup, snrGamma, noiseOffset, buckets, bucketStep,
            resolution, seed, checkpointEvery, sampleEvery, samplePrompt, resume, overwrite,
            device, dtype, vaeFp32, checkpointing,
        };
        cmd.SetAction(parse =>
        {
            var (computeDevice, precision) = CommonOptions.Compute(parse, device, dtype, vaeFp32);
            var fileConfig = parse.GetValue(config) is { } file ? TrainingConfig.Load(file.FullName) : TrainingConfig.LoadDefaults();
            // Without --method a run's later tasks keep the run's method (a run has one), the first task the config's.
            var runMethod = new Runs.RunDirectory(parse.GetValue(run)!.FullName).TryReadManifest()?.Method;
            var baseConfig = fileConfig.ForMethod(parse.GetValue(method) ?? runMethod ?? fileConfig.Method);
            var chosen = ContinualMethod.Parse(baseConfig.Method);
            foreach (var (name, given) in new[] { ("--rank", parse.GetValue(rank) is not null), ("--lambda", parse.GetValue(lambda) is not null), ("--lr", parse.GetValue(lr) is not null) })
                if (given && chosen.WhyNotApplicable(name) is { } why) throw new InputException(why);
            var merged = baseConfig with
            {
                Steps = parse.GetValue(steps) ?? baseConfig.Steps,
                LearningRate = parse.GetValue(lr) ?? baseConfig.LearningRate,
                TokenLearningRate = parse.GetValue(tokenLr) ?? baseConfig.TokenLearningRate,
                Rank = parse.GetValue(rank) ?? baseConfig.Rank,
                Lambda = parse.GetValue(lambda) ?? baseConfig.Lambda,
                BatchSize = parse.GetValue(batch) ?? baseConfig.BatchSize,
                GradientAccumulationSteps = parse.GetValue(accumulation) ?? baseConfig.GradientAccumulationSteps,
                LrScheduler = parse.GetValue(scheduler) ?? baseConfig.LrScheduler,
                // --lr-scheduler constant over a config file's schedule drops the file's warm-up too
                LrWarmupSteps = parse.GetValue(warmup) ?? (parse.GetValue(scheduler) == LrScheduler.Constant ? null : baseConfig.LrWarmupSteps),
                SnrGamma = parse.GetValue(snrGamma) ?? baseConfig.SnrGamma,
                NoiseOffset = parse.GetValue(noiseOffset) ?? baseConfig.NoiseOffset,
                AspectBuckets = parse.GetResult(buckets) is { Implicit: false } ? parse.GetValue(buckets) : baseConfig.AspectBuckets, // --aspect-buckets false turns a config's off
                BucketStep = parse.GetValue(bucketStep) ?? baseConfig.BucketStep,
                Resolution = parse.GetValue(resolution) ?? baseConfig.Resolution,
                Seed = parse.GetValue(seed) ?? baseConfig.Seed,
                CheckpointEvery = parse.GetValue(checkpointEvery) ?? baseConfig.CheckpointEvery,
            };
            var request = new TrainTaskRequest
            {
                Task = parse.GetValue(task),
                ImagesDir = parse.GetValue(images)!.FullName,
                RunDir = parse.GetValue(run)!.FullName,
                ModelPath = CommonOptions.FullPath(parse.GetValue(model)),
                SingleFile = CommonOptions.SingleFile(parse, originalConfig, predictionType),
                Config = merged.Validated("command line", asOptions: true),
                Resume = parse.GetValue(resume),
                Overwrite = parse.GetValue(overwrite),
                SampleEvery = parse.GetValue(sampleEvery),
                SamplePrompt = parse.GetValue(samplePrompt),
                Device = computeDevice,
                Precision = precision,
                GradientCheckpointing = parse.GetValue(checkpointing),
            };
            var bar = new ProgressBar($"task {request.Task}", merged.Steps, stderr);
            string? configPath = parse.GetValue(config)?.FullName;
            var sources = new Dictionary<string, string>
            {
                ["--rank"] = parse.GetValue(rank) is not null ? "--rank" : configPath is not null ? $"{configPath}: key 'rank'" : "the default rank",
                ["--bucket-step"] = parse.GetValue(bucketStep) is not null ? "--bucket-step"
                    : configPath is not null && fileConfig.BucketStep is not null ? $"{configPath}: key 'bucket_step'"
                    : configPath is not null && fileConfig.AspectBuckets == true && parse.GetResult(buckets) is not { Implicit: false } ? $"{configPath}: key 'aspect_buckets' with the default bucket step"
                    : "the default bucket step",
            };
            var result = WithOptionSources(sources, () => ContinualTraining.TrainTask(request,
                step =>
                {
                    bar.Report(step.Step, $"loss {step.Loss:F4}");
                    Log.Debug("Step {Step}/{Total} loss {Loss:F5} mse {Mse:F5} penalty {Penalty:E3} {Seconds:F3} s",
                        step.Step, step.TotalSteps, step.Loss, step.Mse, step.Penalty, step.StepSeconds);
                },
                w => Log.Warning("{Warning}", w), cancel()));
            var e = result.Entry;
            Log.Information("Task {Task} done: {Token} from {Images} image(s), final loss {Loss:F5}, {Seconds:F0} s ({StepSeconds:F3} s/step)",
                e.Task, e.Token, e.ImageCount, e.FinalLoss, e.WallTimeSeconds, result.MeanStepSeconds);
            stdout.WriteLine($"task {e.Task}: learned {e.Token} -> {result.AdapterPath}");
            if (e.RetriedSteps > 0 || e.DroppedSteps > 0) stdout.WriteLine($"task {e.Task}: {StatusCommand.NonFiniteSummary(e)}");
            stdout.WriteLine($"try: cdiff sample --run {request.RunDir} --prompt \"a photo of {e.Token}\"");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// The library knows a value (the rank, the bucket step), not where it came from: name the option or config file
    /// that set it. `sources`: option → what set it ("--rank" itself when given on the command line).
    private static T WithOptionSources<T>(IReadOnlyDictionary<string, string> sources, Func<T> train)
    {
        try { return train(); }
        catch (InputException e) when (sources.FirstOrDefault(s => e.Message.StartsWith(s.Key + " ", StringComparison.Ordinal) && s.Value != s.Key) is { Key: not null } source)
        {
            throw new InputException(source.Value + e.Message[source.Key.Length..]);
        }
    }

}
