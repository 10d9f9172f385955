using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Runs;

/// What `cdiff status` shows: the run's tasks with their sizes, and whether every file matches the manifest.
public sealed record RunStatus(RunManifest Manifest, IReadOnlyList<TaskStatus> Tasks, IReadOnlyList<string> Problems, long TotalBytes)
{
    /// `modelOverride`: where the base model is now, when it was moved since training (as `--model` of sample/train).
    public static RunStatus Inspect(RunDirectory run, string? modelOverride = null)
    {
        var manifest = run.ReadManifest();
        var problems = run.VerifyIntegrity(manifest).ToList();
        problems.AddRange(BaseModelProblems(manifest, modelOverride));
        var tasks = manifest.Tasks.OrderBy(t => t.Task).Select(t => TaskStatus.Of(run, t)).ToList();
        long total = Directory.Exists(run.Root)
            ? new DirectoryInfo(run.Root).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
            : 0;
        return new RunStatus(manifest, tasks, problems, total);
    }

    /// The base model must still be where the manifest says, and be the same model (its identity hash).
    private static IEnumerable<string> BaseModelProblems(RunManifest manifest, string? modelOverride)
    {
        string path = modelOverride ?? manifest.BaseModel.Path;
        if (!Directory.Exists(path)) { yield return $"base model {path} is not there (pass --model DIR where it is now)"; yield break; }
        string? problem = null;
        try
        {
            if (DiffusersFolder.Open(path).ComputeIdentityHash() != manifest.BaseModel.Hash)
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
