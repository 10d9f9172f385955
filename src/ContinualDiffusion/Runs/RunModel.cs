using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Runs;

/// Builds the model a run describes: its base model (checked against the manifest's hash) with every finished
/// task's concept token registered and, for sampling, all tasks' deltas composed as the run's method composes them
/// (Methods/TaskComposition: summed for most) merged into the weights once, so sampling costs exactly what the base
/// model costs.
public static class RunModel
{
    /// The run's base model, opened as task 1 opened it: the manifest's path and single-file options, unless the
    /// caller says where the model (`modelOverride`) or its yaml (`singleFileOverride`) is now. A model whose identity
    /// hash differs from the manifest's is refused, as is a single file's yaml that changed since task 1.
    public static BaseModelSource OpenBaseModel(RunManifest manifest, string? modelOverride, SingleFileOptions? singleFileOverride, string manifestPath)
    {
        var recorded = manifest.BaseModel;
        if (modelOverride is null && !Directory.Exists(recorded.Path) && !File.Exists(recorded.Path))
            throw new InputException($"{manifestPath}: the run's base model {recorded.Path} is not there; pass --model {ModelArgument(recorded)} to say where it is now");
        var source = BaseModelSource.Open(modelOverride ?? recorded.Path, ReopenOptions(recorded, singleFileOverride, manifestPath));
        try
        {
            var hash = source.ComputeIdentityHash();
            if (hash != recorded.Hash)
                throw new InputException($"{manifestPath}: {source.Path} is not the base model the run was trained on (hash {hash[..12]}…, the manifest says {recorded.Hash[..Math.Min(12, recorded.Hash.Length)]}…)");
            return source;
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// How `--model` is written in messages about this run's base model: DIR for a folder, FILE for a single file.
    public static string ModelArgument(BaseModelInfo recorded) => recorded.SingleFile is null ? "DIR" : "FILE";

    /// The options to reopen the run's base model with: what the caller gives, else what the manifest recorded. A
    /// recorded yaml must still be there and hold the same bytes (else the error says which option to pass). A folder
    /// run records none: options given for it reach BaseModelSource, which refuses them for a folder.
    public static SingleFileOptions? ReopenOptions(BaseModelInfo recorded, SingleFileOptions? given, string manifestPath)
    {
        if (recorded.SingleFile is not { } single) return given;
        var yaml = given?.OriginalConfigPath ?? single.OriginalConfig;
        if (given?.OriginalConfigPath is null && yaml is not null)
        {
            if (!File.Exists(yaml))
                throw new InputException($"{manifestPath}: the run's original config {yaml} is not there; pass --original-config FILE to say where it is now");
            if (RunDirectory.Sha256File(yaml) != single.OriginalConfigSha256)
                throw new InputException($"{manifestPath}: {yaml} changed since the run was trained with it (its SHA-256 differs from the manifest's); restore it or pass --original-config with the yaml the run was trained with");
        }
        return new SingleFileOptions { OriginalConfigPath = yaml, PredictionType = given?.PredictionType ?? single.PredictionType };
    }

    public static StableDiffusion LoadForSampling(RunDirectory run, string? modelOverride = null, Device? device = null,
        SingleFileOptions? singleFileOverride = null, Runtime.ComputePrecision? precision = null)
    {
        var manifest = run.ReadManifest();
        StableDiffusion model;
        using (var source = OpenBaseModel(manifest, modelOverride, singleFileOverride, run.ManifestPath))
            model = StableDiffusion.Load(source, device, precision);
        try
        {
            var adapters = LoadAdapters(run, manifest, model, manifest.Tasks.Count);
            try
            {
                foreach (var a in adapters) model.AddConcept(a.Metadata.Token, a.TokenEmbedding);
                TaskComposition.MergeInto(ContinualMethod.Parse(manifest.Method), model, BaseWeights(model), adapters);
            }
            finally { foreach (var a in adapters) a.Dispose(); }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// Weights of every adapted layer (cross-attention K/V), by layer name.
    public static Dictionary<string, Tensor> BaseWeights(StableDiffusion model) =>
        LoraInjector.BaseWeights(model.CrossAttentionKeyValueTargets());

    /// Adapters of tasks 1..count, validated as one sequence on this base model.
    public static IReadOnlyList<AdapterSet> LoadAdapters(RunDirectory run, RunManifest manifest, StableDiffusion model, int count) =>
        LoadAdapters(run, manifest, AdapterExpectation.ForWeights(BaseWeights(model)) with { TokenHiddenSize = model.TextEncoder.HiddenSize }, count);

    /// Adapters of tasks 1..count, checked against the manifest's SHA-256s and validated as one sequence that fits
    /// `expected` (its layers and token width; the base model hash is the manifest's) — without a loaded model.
    public static IReadOnlyList<AdapterSet> LoadAdapters(RunDirectory run, RunManifest manifest, AdapterExpectation expected, int count)
    {
        var problems = run.VerifyIntegrity(manifest with { Tasks = [.. manifest.Tasks.Where(t => t.Task <= count)] });
        if (problems.Count > 0)
            throw new InputException($"{run.ManifestPath}: {problems[0]}{(problems.Count > 1 ? $" (and {problems.Count - 1} more problems)" : "")}; `cdiff status` lists them");
        var files = manifest.Tasks.OrderBy(t => t.Task).Take(count).Select(t => Path.Combine(run.Root, t.AdapterFile)).ToList();
        // Sampling composes by the manifest's method: every adapter must have been trained with it.
        AdapterMethods.TryParse(manifest.Method, out var method);
        return AdapterFile.LoadSequence(files, expected with { BaseModelHash = manifest.BaseModel.Hash, Method = method });
    }
}
