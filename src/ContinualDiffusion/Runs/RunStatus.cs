using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;

namespace ContinualDiffusion.Runs;

/// What `cdiff status` shows: the run's tasks with their sizes, and whether every file matches the manifest.
public sealed record RunStatus(RunManifest Manifest, IReadOnlyList<TaskStatus> Tasks, IReadOnlyList<string> Problems, long TotalBytes)
{
    /// `modelOverride`: where the base model is now, when it was moved since training (as `--model` of sample/train);
    /// `singleFileOverride`: where a single file's yaml is now (as `--original-config`).
    public static RunStatus Inspect(RunDirectory run, string? modelOverride = null, SingleFileOptions? singleFileOverride = null)
    {
        var manifest = run.ReadManifest();
        var problems = run.VerifyIntegrity(manifest).ToList();
        problems.AddRange(BaseModelProblems(manifest, modelOverride, singleFileOverride, run.ManifestPath));
        var tasks = manifest.Tasks.OrderBy(t => t.Task).Select(t => TaskStatus.Of(run, t)).ToList();
        long total = Directory.Exists(run.Root)
            ? new DirectoryInfo(run.Root).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
            : 0;
        return new RunStatus(manifest, tasks, problems, total);
    }

    /// The base model must still be where the manifest says, and be the same model (its identity hash), opened with
    /// the options the manifest recorded for a single file.
    private static IEnumerable<string> BaseModelProblems(RunManifest manifest, string? modelOverride, SingleFileOptions? singleFileOverride, string manifestPath)
    {
        string path = modelOverride ?? manifest.BaseModel.Path;
        if (!Directory.Exists(path) && !File.Exists(path))
        {
            yield return $"base model {path} is not there (pass --model {RunModel.ModelArgument(manifest.BaseModel)} where it is now)";
            yield break;
        }
        string? problem = null;
        try
        {
            using var source = BaseModelSource.Open(path, RunModel.ReopenOptions(manifest.BaseModel, singleFileOverride, manifestPath));
            if (source.ComputeIdentityHash() != manifest.BaseModel.Hash)
                problem = $"base model {path} is not the model the run was trained on (its hash differs from the manifest's)";
        }
        catch (Exception e) when (e is InputException or IOException or UnauthorizedAccessException) { problem = $"base model {path}: {e.Message}"; }
        if (problem is not null) yield return problem;
    }
}

public sealed record TaskStatus(TaskEntry Entry, long Parameters, long Bytes)
{
    public static TaskStatus Of(RunDirectory run, TaskEntry e)
    {
        var path = Path.Combine(run.Root, e.AdapterFile);
        if (!File.Exists(path)) return new TaskStatus(e, 0, 0);
        try
        {
            using var f = SafeTensorsFile.Open(path);
            long parameters = f.Tensors.Values.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
            return new TaskStatus(e, parameters, new FileInfo(path).Length);
        }
        catch (InputException)
        {
            return new TaskStatus(e, 0, new FileInfo(path).Length); // the integrity check reports the damage
        }
    }
}
