using System.Globalization;
using ContinualDiffusion.Data;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Training;
using Methods_ = ContinualDiffusion.Methods;

namespace ContinualDiffusion.Benchmarking;

/// What `cdiff benchmark` runs: which methods, seeds and tasks, how much each concept is trained and sampled.
/// Defaults are the issue's protocol (5 tasks, 20 images per concept, 100 samples per concept, 3 seeds).
public sealed record BenchmarkOptions
{
    public const string ReferenceMethod = "reference";

    /// The training options `cdiff benchmark` loads unless --config names another file (`Training` below defaults
    /// to SD's TrainingConfig for library callers): configs/train/fashion.json, tuned for the
    /// small Fashion-MNIST model (higher learning rates than SD's defaults, batch 4, and a λ on the scale of
    /// this model's adapter deltas; see the README's benchmark section for the sweep behind it).
    public static string DefaultTrainingConfigPath => Path.Combine(AppContext.BaseDirectory, "configs", "train", "fashion.json");
    public static readonly string[] KnownMethods = [.. Lora.AdapterMethods.AllNames, ReferenceMethod];

    /// The default comparison: C-LoRA, sequential LoRA and the reference.
    public static readonly string[] DefaultMethods = ["clora", "lora", ReferenceMethod];

    /// The base model every run starts from: a diffusers-format folder or an original-LDM single file.
    public required string ModelPath { get; init; }
    /// What a single-file base model's weights cannot say (`--original-config`, `--prediction-type`); null otherwise.
    public SingleFileOptions? SingleFile { get; init; }
    /// Where results.json, report.md, figures and the per-run cache go.
    public required string OutDir { get; init; }
    public IReadOnlyList<string> Methods { get; init; } = DefaultMethods;
    /// Extra C-LoRA runs, one per λ (the sweep); the plain "clora" method runs at the training config's λ.
    public IReadOnlyList<double> Lambdas { get; init; } = [];
    public IReadOnlyList<long> Seeds { get; init; } = [0, 1, 2];
    public int Tasks { get; init; } = 5;
    /// The Fashion-MNIST class of each task, in order (`--concepts`); the first `Tasks` are used.
    public IReadOnlyList<int> Concepts { get; init; } = FashionConcepts.Labels;
    public int ImagesPerConcept { get; init; } = 20;
    /// Samples generated and scored per concept after every task (and per base class).
    public int Samples { get; init; } = 100;
    public int SampleSteps { get; init; } = 25;
    /// 7.5: the shipped base model's coarse prompts are recognised in 93% of samples at 7.5, 87% at 4.
    public double Guidance { get; init; } = 7.5;
    /// Lin et al.'s guidance rescale φ (0 = plain classifier-free guidance).
    public double GuidanceRescale { get; init; }
    public int SampleBatch { get; init; } = 50;
    /// Keep the first seed's continual run directories as <out>/run-<method> (the demo hands one to the user).
    public bool KeepRuns { get; init; }
    /// Score the base model's own class prompts before the first and after the last task.
    public bool ScoreBaseClasses { get; init; } = true;
    /// "{}" is replaced by a coarse class name ("a photo of a shoe").
    public string BasePromptTemplate { get; init; } = "a photo of a {}";
    /// "{}" is replaced by the concept's token ("a photo of <v1>"): no class noun, as in the paper.
    public string ConceptPromptTemplate { get; init; } = "a photo of {}";
    /// The scoring classifier; trained and cached here when the file does not exist.
    public required string ClassifierPath { get; init; }
    public int ClassifierEpochs { get; init; } = 3; // 91.1% test accuracy, 1.6–2.7 min on 2 cores (`scripts/bench.sh classifier`)
    public string DataDir { get; init; } = FashionMnist.DefaultFolder;
    /// Training settings of every task (steps, rank, learning rates, λ); method, λ and seed are set per run.
    public TrainingConfig Training { get; init; } = new();

    /// Rejects options that cannot run, naming the command-line option.
    public BenchmarkOptions Validated()
    {
        static void Require(bool ok, string message) { if (!ok) throw new InputException(message); }
        Require(!string.IsNullOrWhiteSpace(ModelPath), "--model is required (a diffusers-format Stable Diffusion folder, e.g. from `cdiff pretrain`, or a single-file .safetensors checkpoint)");
        Require(!string.IsNullOrWhiteSpace(OutDir), "--out must name a folder");
        Require(Methods.Count > 0 || Lambdas.Count > 0, $"--methods: give at least one of {string.Join(", ", KnownMethods)}");
        foreach (var m in Methods)
            Require(KnownMethods.Contains(m), $"--methods: unknown method '{m}'; expected a comma-separated list of {string.Join(", ", KnownMethods)}");
        Require(Methods.Distinct().Count() == Methods.Count, "--methods: a method is listed twice");
        foreach (var l in Lambdas) Require(double.IsFinite(l) && l >= 0, $"--lambdas: {l.ToString(CultureInfo.InvariantCulture)} must be a number >= 0");
        Require(Lambdas.Distinct().Count() == Lambdas.Count, "--lambdas: a λ is listed twice");
        Require(Seeds.Count > 0, "--seeds: give at least one seed");
        Require(Seeds.Distinct().Count() == Seeds.Count, "--seeds: a seed is listed twice");
        Require(Concepts.Count > 0 && Concepts.All(l => l >= 0 && l < FashionMnist.ClassNames.Length) && Concepts.Distinct().Count() == Concepts.Count, "--concepts: give distinct Fashion-MNIST classes");
        Require(Tasks is >= 1 && Tasks <= Concepts.Count, $"--tasks: {Tasks} must be between 1 and {Concepts.Count} (one Fashion-MNIST class of --concepts per task)");
        Require(ImagesPerConcept >= 1, $"--images-per-concept: {ImagesPerConcept} must be >= 1");
        Require(Samples >= 2, $"--samples: {Samples} must be >= 2 (MMD needs two samples)");
        Require(SampleSteps >= 1, $"--sample-steps: {SampleSteps} must be >= 1");
        Require(double.IsFinite(Guidance) && Guidance >= 0, $"--guidance: {Guidance.ToString(CultureInfo.InvariantCulture)} must be a number >= 0");
        Require(GuidanceRescale is >= 0 and <= 1, $"--guidance-rescale: {GuidanceRescale.ToString(CultureInfo.InvariantCulture)} must be a number from 0 to 1");
        Require(SampleBatch >= 1, $"--sample-batch: {SampleBatch} must be >= 1");
        Require(BasePromptTemplate.Contains("{}"), "--base-prompt: the template must contain {} (replaced by the class name)");
        Require(ConceptPromptTemplate.Contains("{}"), "--concept-prompt: the template must contain {} (replaced by the concept token)");
        Require(ClassifierEpochs >= 1, $"--classifier-epochs: {ClassifierEpochs} must be >= 1");
        Require(!string.IsNullOrWhiteSpace(ClassifierPath), "--classifier must name a file");
        Training.Validated("training options", asOptions: true);
        return this;
    }

    /// The runs each seed makes, in report order: clora, the λ sweep, lora, the other methods (in `--method` order),
    /// reference.
    public IReadOnlyList<MethodSpec> MethodSpecs()
    {
        var specs = new List<MethodSpec>();
        if (Methods.Contains("clora")) specs.Add(new MethodSpec("clora", "clora", Training.ForMethod("clora").Lambda, Continual: true));
        foreach (var l in Lambdas) specs.Add(new MethodSpec(MethodSpec.SweepLabel(l), "clora", l, Continual: true));
        foreach (var m in Lora.AdapterMethods.AllNames.Where(m => m != "clora" && Methods.Contains(m)))
            specs.Add(new MethodSpec(m, m, Methods_.ContinualMethod.Parse(m).UsesPenalty ? Training.ForMethod(m).Lambda : 0, Continual: true));
        if (Methods.Contains(ReferenceMethod)) specs.Add(new MethodSpec(ReferenceMethod, "lora", double.NaN, Continual: false));
        var clash = specs.GroupBy(s => s.Label).FirstOrDefault(g => g.Count() > 1);
        if (clash is not null) throw new InputException($"--lambdas: λ makes the method name '{clash.Key}' twice (is the default λ in the sweep?)");
        return specs;
    }
}

/// One benchmarked method: its report label, the training method it uses, its λ, and whether it is continual
/// (tasks trained one after another in one run and sampled with all adapters merged) or the non-continual
/// reference (each concept trained alone from the base model and sampled with only its own adapter).
public sealed record MethodSpec(string Label, string TrainingMethod, double Lambda, bool Continual)
{
    /// "clora-l1e6" for λ = 1e6.
    public static string SweepLabel(double lambda) => "clora-l" + (lambda == 0 ? "0" : lambda.ToString("0.##e0", CultureInfo.InvariantCulture));

    /// Which concepts' adapters (0-based) are merged when concept `concept` is sampled after task `afterTask`
    /// (0-based): every concept learned so far for a continual method, only its own for the reference.
    public IReadOnlyList<int> AdaptersFor(int afterTask, int concept)
    {
        if (concept > afterTask) throw new ArgumentOutOfRangeException(nameof(concept), $"concept {concept} is not learned after task {afterTask}");
        return Continual ? [.. Enumerable.Range(0, afterTask + 1)] : [concept];
    }
}
