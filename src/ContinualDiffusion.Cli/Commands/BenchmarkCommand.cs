using System.CommandLine;
using System.Globalization;
using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation.Reporting;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;
using Serilog;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff benchmark --model DIR --out DIR`: the continual-customization benchmark on fine-grained Fashion-MNIST classes.
internal static class BenchmarkCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var model = CommonOptions.Model("Base model: a diffusers-format folder (e.g. from `cdiff pretrain`) or an original-LDM single-file .safetensors.");
        model.Required = true;
        var originalConfig = CommonOptions.OriginalConfig();
        var predictionType = CommonOptions.PredictionType();
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder for results.json, report.md, figures and sample grids (finished runs are cached there and reused).", DefaultValueFactory = _ => new DirectoryInfo("bench-out") };
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods: clora, lora (λ = 0), textual-inversion, custom-diffusion, custom-diffusion-merge, magmax, ortho-init, anchored-lora, and reference (each concept alone with LoRA, no forgetting).", DefaultValueFactory = _ => "clora,lora,reference" };
        var lambdas = new Option<string>("--lambdas") { Description = "Comma-separated λ values for a C-LoRA sweep (each an extra method 'clora-l<λ>'), e.g. 1e6,1e7.", DefaultValueFactory = _ => "" };
        var seeds = new Option<string>("--seeds") { Description = "Comma-separated seeds (concept images, initialisation, sampling noise).", DefaultValueFactory = _ => "0,1,2" };
        var tasks = new Option<int>("--tasks") { Description = "Number of tasks: the first N classes of --concepts.", DefaultValueFactory = _ => 5 };
        var concepts = new Option<string?>("--concepts") { Description = "Fashion-MNIST classes of the tasks in order, comma-separated (default pullover,tshirt,coat,sandal,ankleboot: three kinds of top, then two kinds of shoe)." };
        var imagesPerConcept = new Option<int>("--images-per-concept") { Description = "Training images of each concept (from the train images kept out of pretraining).", DefaultValueFactory = _ => 20 };
        var config = new Option<FileInfo?>("--config") { Description = "Training options as JSON (keys as in configs/train/defaults.json). Default: configs/train/fashion.json." };
        var trainSteps = new Option<int?>("--train-steps") { Description = "Training steps per task (default: the training config's)." };
        var rank = new Option<int?>("--rank") { Description = "LoRA rank r (default: the training config's)." };
        var lr = new Option<double?>("--lr") { Description = "LoRA learning rate (default: the training config's)." };
        var tokenLr = new Option<double?>("--token-lr") { Description = "Concept-token embedding learning rate (default: the training config's)." };
        var lambda = new Option<double?>("--lambda") { Description = "λ of the plain 'clora' method (default: the training config's)." };
        var samples = new Option<int>("--samples") { Description = "Images generated and scored per concept after every task (and per base class).", DefaultValueFactory = _ => 100 };
        var sampleSteps = new Option<int>("--sample-steps") { Description = "Denoising steps per sample.", DefaultValueFactory = _ => 25 };
        var guidance = new Option<double>("--guidance") { Description = "Classifier-free guidance scale.", DefaultValueFactory = _ => 7.5 };
        var guidanceRescale = new Option<double>("--guidance-rescale") { Description = "Guidance rescale φ from 0 to 1 (Lin et al. 2024, diffusers' guidance_rescale): pulls over-exposed samples at high guidance back; 0 = off.", DefaultValueFactory = _ => 0 };
        var sampleBatch = new Option<int>("--sample-batch") { Description = "Images generated per batch.", DefaultValueFactory = _ => 50 };
        var keepRuns = new Option<bool>("--keep-runs") { Description = "Keep the first seed's continual runs as <out>/run-<method> (usable with cdiff sample --run and status)." };
        var noBase = new Option<bool>("--no-base-classes") { Description = "Do not score the base model's own class prompts before and after." };
        var basePrompt = new Option<string>("--base-prompt") { Description = "Prompt template of the base model's coarse classes; {} is top, trouser, dress, shoe or bag.", DefaultValueFactory = _ => "a photo of a {}" };
        var conceptPrompt = new Option<string>("--concept-prompt") { Description = "Prompt template of the concepts; {} is the token <vi>.", DefaultValueFactory = _ => "a photo of {}" };
        var classifier = new Option<FileInfo?>("--classifier") { Description = "Scoring classifier (safetensors); trained and saved there when missing. Default: $CDIFF_CACHE/fashion-classifier-v3.safetensors." };
        var classifierEpochs = new Option<int>("--classifier-epochs") { Description = "Epochs when the classifier has to be trained.", DefaultValueFactory = _ => 3 };
        var dataDir = new Option<DirectoryInfo>("--data") { Description = "Fashion-MNIST folder (gzipped IDX files).", DefaultValueFactory = _ => new DirectoryInfo(FashionMnist.DefaultFolder) };

        var device = CommonOptions.Device();
        var dtype = CommonOptions.DType();
        var vaeFp32 = CommonOptions.VaeFp32();
        var cmd = new Command("benchmark", "Continual-customization benchmark: learn fine-grained Fashion-MNIST classes one task after another and score forgetting.")
        {
            model, originalConfig, predictionType, output, methods, lambdas, seeds, tasks, concepts, imagesPerConcept, config, trainSteps, rank, lr, tokenLr, lambda, samples, sampleSteps, guidance, guidanceRescale, sampleBatch,
            keepRuns, noBase, basePrompt, conceptPrompt, classifier, classifierEpochs, dataDir, device, dtype, vaeFp32,
        };
        cmd.SetAction(parse =>
        {
            var (computeDevice, precision) = CommonOptions.Compute(parse, device, dtype, vaeFp32);
            var baseConfig = TrainingConfig.Load(parse.GetValue(config)?.FullName ?? BenchmarkOptions.DefaultTrainingConfigPath);
            // Options given here win over the config's per-method defaults too (Pinned drops them from every method);
            // --lambda is C-LoRA's alone: other penalties (anchored-lora's) are on other scales and keep their own λ.
            var training = baseConfig.Pinned(new MethodDefaults
            {
                Steps = parse.GetValue(trainSteps),
                Rank = parse.GetValue(rank),
                LearningRate = parse.GetValue(lr),
                TokenLearningRate = parse.GetValue(tokenLr),
            });
            if (parse.GetValue(lambda) is { } cloraLambda) training = training.WithMethodLambda("clora", cloraLambda);
            var options = new BenchmarkOptions
            {
                ModelPath = CommonOptions.FullPath(parse.GetValue(model))!,
                SingleFile = CommonOptions.SingleFile(parse, originalConfig, predictionType),
                OutDir = parse.GetValue(output)!.FullName,
                Methods = SplitList(parse.GetValue(methods)!, "--methods", s => s),
                Lambdas = SplitList(parse.GetValue(lambdas)!, "--lambdas", s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture)),
                Seeds = SplitList(parse.GetValue(seeds)!, "--seeds", s => long.Parse(s, CultureInfo.InvariantCulture)),
                Tasks = parse.GetValue(tasks),
                Concepts = parse.GetValue(concepts) is { } c ? FashionConcepts.Parse(c) : FashionConcepts.Labels,
                ImagesPerConcept = parse.GetValue(imagesPerConcept),
                Samples = parse.GetValue(samples),
                SampleSteps = parse.GetValue(sampleSteps),
                Guidance = parse.GetValue(guidance),
                GuidanceRescale = parse.GetValue(guidanceRescale),
                SampleBatch = parse.GetValue(sampleBatch),
                ScoreBaseClasses = !parse.GetValue(noBase),
                KeepRuns = parse.GetValue(keepRuns),
                BasePromptTemplate = parse.GetValue(basePrompt)!,
                ConceptPromptTemplate = parse.GetValue(conceptPrompt)!,
                ClassifierPath = parse.GetValue(classifier)?.FullName ?? ClassifierCache.DefaultPath,
                ClassifierEpochs = parse.GetValue(classifierEpochs),
                DataDir = parse.GetValue(dataDir)!.FullName,
                Training = training,
            };
            var results = new BenchmarkRunner(options, new CliProgress(stderr), computeDevice, precision).Run(cancel());
            PrintSummary(stdout, results, options.OutDir);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// "0,1,2" → [0, 1, 2]; an unparsable item is an error naming the option.
    internal static List<T> SplitList<T>(string text, string option, Func<string, T> parse)
    {
        var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        try { return [.. items.Select(parse)]; }
        catch (FormatException) { throw new InputException($"{option}: '{text}' is not a comma-separated list of the expected values"); }
        catch (OverflowException) { throw new InputException($"{option}: '{text}' holds a value out of range"); }
    }

    private static void PrintSummary(TextWriter stdout, BenchmarkResults results, string outDir)
    {
        foreach (var s in ResultsAggregation.Summarize(results))
            stdout.WriteLine($"{s.Method,-14} A {ReportFormat.Percent(s.FinalAverage),-16} F {ReportFormat.Percent(s.Forgetting),-16} final MMD² {ReportFormat.Number(s.FinalMmd)}");
        stdout.WriteLine($"report: {Path.Combine(outDir, BenchmarkReport.ReportFileName)}");
    }

    /// Phases as log lines; training steps as a progress bar per task.
    private sealed class CliProgress(TextWriter terminal) : IBenchmarkProgress
    {
        private readonly StagedProgressBar _bar = new(terminal);

        public void Info(string message) => Log.Information("{Message}", message);

        public void TrainStep(string what, TrainStepReport step) => _bar.Report(what, step.Step, step.TotalSteps, step.Loss);
    }
}
