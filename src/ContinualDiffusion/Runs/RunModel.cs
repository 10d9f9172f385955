using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Runs;

/// Builds the model a run describes: its base model (checked against the manifest's hash) with every finished
/// task's concept token registered and, for sampling, the sum of all tasks' deltas merged into the weights
/// once, so sampling costs exactly what the base model costs.
public static class RunModel
{
    /// The base model folder of a run, refusing a folder whose identity hash differs from the manifest's.
    public static DiffusersFolder BaseFolder(RunManifest manifest, string? modelOverride, string manifestPath)
    {
        if (modelOverride is null && !Directory.Exists(manifest.BaseModel.Path) && !File.Exists(manifest.BaseModel.Path))
            throw new InputException($"{manifestPath}: the run's base model {manifest.BaseModel.Path} is not there; pass --model DIR to say where it is now");
        var folder = DiffusersFolder.Open(modelOverride ?? manifest.BaseModel.Path);
        var hash = folder.ComputeIdentityHash();
        if (hash != manifest.BaseModel.Hash)
            throw new InputException($"{manifestPath}: {folder.Root} is not the base model the run was trained on (hash {hash[..12]}…, the manifest says {manifest.BaseModel.Hash[..Math.Min(12, manifest.BaseModel.Hash.Length)]}…)");
        return folder;
    }

    public static StableDiffusion LoadForSampling(RunDirectory run, string? modelOverride = null, Device? device = null)
    {
        var manifest = run.ReadManifest();
        var model = StableDiffusion.Load(BaseFolder(manifest, modelOverride, run.ManifestPath), device);
        try
        {
            var adapters = LoadAdapters(run, manifest, model, manifest.Tasks.Count);
            try
            {
                foreach (var a in adapters) model.AddConcept(a.Metadata.Token, a.TokenEmbedding);
                var weights = BaseWeights(model);
                DeltaMerger.MergeInto(weights, adapters);
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
    public static IReadOnlyList<AdapterSet> LoadAdapters(RunDirectory run, RunManifest manifest, StableDiffusion model, int count)
    {
        var problems = run.VerifyIntegrity(manifest with { Tasks = [.. manifest.Tasks.Where(t => t.Task <= count)] });
        if (problems.Count > 0)
            throw new InputException($"{run.ManifestPath}: {problems[0]}{(problems.Count > 1 ? $" (and {problems.Count - 1} more problems)" : "")}; `cdiff status` lists them");
        var files = manifest.Tasks.OrderBy(t => t.Task).Take(count).Select(t => Path.Combine(run.Root, t.AdapterFile)).ToList();
        var expected = AdapterExpectation.ForWeights(BaseWeights(model)) with
        {
            BaseModelHash = manifest.BaseModel.Hash,
            TokenHiddenSize = model.TextEncoder.HiddenSize,
        };
        return AdapterFile.LoadSequence(files, expected);
    }
}
