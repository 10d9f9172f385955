using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Classification;

/// A classification run directory: `classify.json` (the manifest), `states/task-NNN.safetensors`, the learner's
/// state after each task, and while a task trains `checkpoints/task-NNN.safetensors` (what `--resume` continues).
/// Writes are atomic; the manifest is written after the state file it names.
public sealed class ClassifyRun(string root)
{
    public const string ManifestName = "classify.json";

    public string Root { get; } = Path.GetFullPath(root);
    public string ManifestPath => Path.Combine(Root, ManifestName);
    public string StatesDir => Path.Combine(Root, "states");
    public static string StateFileName(int task) => $"task-{task:D3}.safetensors";
    public string StatePath(int task) => Path.Combine(StatesDir, StateFileName(task));
    public bool Exists => File.Exists(ManifestPath);

    /// Where the resumable state of task `task` lives while it trains (<see cref="ClassifyTaskCheckpoint"/>).
    public string CheckpointPath(int task) => Path.Combine(Root, "checkpoints", $"task-{task:D3}.safetensors");

    /// The manifest, checked: format and version, tasks numbered 1..n, every task's classes known and new.
    public ClassifyManifest Read()
    {
        if (!Exists) throw new InputException($"{ManifestPath}: not found (no classification run here; start one with `cdiff classify train --task 1`)");
        ClassifyManifest? m;
        try { m = JsonSerializer.Deserialize<ClassifyManifest>(File.ReadAllText(ManifestPath), JsonConfig.Options); }
        catch (JsonException e) { throw new InputException($"{ManifestPath}: not a valid classification manifest ({e.Message})"); }
        if (m is null) throw new InputException($"{ManifestPath}: empty manifest");
        if (m.Format != ClassifyManifest.FormatName) throw new InputException($"{ManifestPath}: key 'format' is '{m.Format}', expected '{ClassifyManifest.FormatName}'");
        if (m.Version != 1) throw new InputException($"{ManifestPath}: key 'version' is {m.Version}; this cdiff reads version 1");
        if (!Methods.ClassifyMethods.Names.Contains(m.Method))
            throw new InputException($"{ManifestPath}: key 'method' is '{m.Method}', expected one of {string.Join(", ", Methods.ClassifyMethods.Names)}");
        if (m.Dataset is not ("mnist" or "folders")) throw new InputException($"{ManifestPath}: key 'dataset' is '{m.Dataset}', expected mnist or folders");
        if (m.Backbone.Sha256 is not { Length: 64 } || !m.Backbone.Sha256.All(char.IsAsciiHexDigitLower))
            throw new InputException($"{ManifestPath}: key 'backbone.sha256' is not a SHA-256 (64 lowercase hex digits)");
        if (m.Options.Problem() is { } bad) throw new InputException($"{ManifestPath}: options: {bad}");
        var seen = new HashSet<int>();
        for (int i = 0; i < m.Tasks.Count; i++)
        {
            var t = m.Tasks[i];
            if (t.Task != i + 1) throw new InputException($"{ManifestPath}: tasks[{i}] is task {t.Task}, expected {i + 1}");
            foreach (var c in t.Classes)
            {
                if (c < 0 || c >= m.ClassNames.Count) throw new InputException($"{ManifestPath}: task {t.Task} has class {c}, but class_names lists {m.ClassNames.Count}");
                if (!seen.Add(c)) throw new InputException($"{ManifestPath}: class {c} appears in two tasks");
            }
            if (t.State != StateFileName(t.Task)) throw new InputException($"{ManifestPath}: task {t.Task} names state '{t.State}', expected '{StateFileName(t.Task)}'");
            if (t.Options?.Problem() is { } badTask) throw new InputException($"{ManifestPath}: task {t.Task}'s options: {badTask}");
        }
        return m;
    }

    public void Write(ClassifyManifest manifest)
    {
        Directory.CreateDirectory(Root);
        AtomicFile.WriteAllText(ManifestPath, JsonConfig.Serialize(manifest));
    }

    /// Problems with the run's files: a state file that is missing or whose SHA-256 differs from the manifest's.
    public IReadOnlyList<string> VerifyIntegrity(ClassifyManifest manifest)
    {
        var problems = new List<string>();
        foreach (var t in manifest.Tasks)
        {
            var path = StatePath(t.Task);
            if (!File.Exists(path)) { problems.Add($"{path}: missing (task {t.Task})"); continue; }
            var hash = Runs.RunDirectory.Sha256File(path);
            if (hash != t.StateSha256) problems.Add($"{path}: SHA-256 {hash[..12]}… differs from the manifest's {t.StateSha256[..Math.Min(12, t.StateSha256.Length)]}… (task {t.Task})");
        }
        return problems;
    }
}
