using System.Security.Cryptography;
using System.Text.Json;
using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Runs;

/// A continual-customization run on disk:
///   manifest.json                     base model, method, finished tasks (see RunManifest)
///   adapters/task-003.safetensors     one adapter per task (A, B per adapted layer + the token embedding)
///   checkpoints/task-003/             the in-progress task's resumable state (deleted when it finishes)
///   logs/task-003.csv                 the task's per-step losses, learning rates, gradient norms (TrainingLog)
///   samples/task-003/                 --sample-every's validation images
///   .lock                             held while a training runs
/// Every file is written atomically; the manifest is the commit point of a task.
public sealed class RunDirectory
{
    public const string ManifestName = "manifest.json";
    public string Root { get; }

    public RunDirectory(string root) => Root = Path.GetFullPath(root);

    public string ManifestPath => Path.Combine(Root, ManifestName);
    public string AdaptersDir => Path.Combine(Root, "adapters");
    public string AdapterPath(int task) => Path.Combine(AdaptersDir, AdapterFileName(task));
    public static string AdapterFileName(int task) => $"task-{task:D3}.safetensors";
    public string CheckpointDir(int task) => Path.Combine(Root, "checkpoints", $"task-{task:D3}");
    public string SamplesDir(int task) => Path.Combine(Root, "samples", $"task-{task:D3}");
    /// The task's per-step training log (TrainingLog).
    public string TrainingLogPath(int task) => Path.Combine(Root, "logs", $"task-{task:D3}.csv");
    /// The log of the task while it trains (moved to TrainingLogPath at its commit).
    public string TrainingLogInProgressPath(int task) => Path.Combine(CheckpointDir(task), "log.csv");

    public bool Exists => File.Exists(ManifestPath);

    /// The manifest, or null for a new run. A malformed manifest is an error naming the file.
    public RunManifest? TryReadManifest()
    {
        if (!File.Exists(ManifestPath)) return null;
        try
        {
            var m = JsonSerializer.Deserialize<RunManifest>(File.ReadAllText(ManifestPath), ManifestJson.Options)
                    ?? throw new JsonException("empty");
            if (m.FormatVersion != RunManifest.CurrentFormatVersion)
                throw new InputException($"{ManifestPath}: format_version {m.FormatVersion} is not supported (expected {RunManifest.CurrentFormatVersion})");
            m.Validate(ManifestPath);
            return m;
        }
        catch (JsonException e)
        {
            throw new InputException($"{ManifestPath}: not a valid cdiff manifest ({(e.Path is { Length: > 1 } where ? where.TrimStart('$', '.') + ": " : "")}{e.Message.Split(". ")[0]})");
        }
    }

    public RunManifest ReadManifest() =>
        TryReadManifest() ?? throw new InputException($"{Root}: not a cdiff run directory (no {ManifestName}); train task 1 first");

    public void WriteManifest(RunManifest manifest) =>
        AtomicFile.WriteAllText(ManifestPath, JsonSerializer.Serialize(manifest, ManifestJson.Options));

    public static string Sha256File(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }

    /// Compares every task's adapter file with the manifest (presence, size, SHA-256).
    public IReadOnlyList<string> VerifyIntegrity(RunManifest manifest)
    {
        var problems = new List<string>();
        foreach (var t in manifest.Tasks.OrderBy(t => t.Task))
        {
            var path = Path.Combine(Root, t.AdapterFile);
            if (!File.Exists(path)) { problems.Add($"task {t.Task}: {path} is missing"); continue; }
            long size = new FileInfo(path).Length;
            if (size != t.AdapterBytes) { problems.Add($"task {t.Task}: {path} has {size} bytes, the manifest says {t.AdapterBytes}"); continue; }
            if (Sha256File(path) != t.AdapterSha256) problems.Add($"task {t.Task}: {path} does not match its SHA-256 in the manifest");
        }
        return problems;
    }
}
