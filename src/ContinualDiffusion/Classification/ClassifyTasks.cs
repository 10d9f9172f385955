using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// What `cdiff classify train` and `eval` do, top to bottom: bind the run to its backbone, rebuild the learner
/// from the last task's state, learn one task or score the test images, and commit atomically.
public static class ClassifyTasks
{
    /// One task to learn. Exactly one of `Classes` (labels of the built-in MNIST digits) and `ImagesDir` (the user's
    /// class folders) is given. `Options` null keeps the run's (task 1: the defaults). Every `CheckpointEvery` steps
    /// (0: never) the task in progress is saved; `Resume` continues an interrupted run of the task from there.
    /// `BackbonePath` null: the run's own (a later task; the first needs one).
    public sealed record TrainRequest(string RunDir, int Task, string? Method, string? BackbonePath, IReadOnlyList<int>? Classes, string? ImagesDir,
        ClassifyOptions? Options, string? MnistTarball = null, int CheckpointEvery = 0, bool Resume = false);

    /// The task just learned and, for MNIST runs, the accuracy on the test images of every task so far (null for class
    /// folders: the training folders are not test images; `classify eval --images` scores those).
    /// `ResumedAfter`: the step an interrupted run of the task had reached (null: trained from the start).
    public sealed record TaskOutcome(ClassifyTaskEntry Entry, IReadOnlyList<string> ClassNames, double[]? AccuracyPerTask, double? Accuracy, long? ResumedAfter = null);

    public static TaskOutcome Train(TrainRequest request, Action<string>? info = null, Action<int, int, double>? progress = null, CancellationToken cancel = default)
    {
        var run = new ClassifyRun(request.RunDir);
        if (!run.Exists && request.Task != 1) // before the lock, which would create the folder
            throw new InputException($"--task {request.Task}: {run.Root} has no classification run yet, so the first task is 1");
        bool created = !Directory.Exists(run.Root);
        try { return TrainLocked(run, request, info, progress, cancel); }
        catch
        {
            // A failed first task leaves no empty run folder behind. (Checked here, not in a filter: filters run before
            // the inner frames' `using`s have released the lock file.)
            if (created && Directory.Exists(run.Root) && !Directory.EnumerateFileSystemEntries(run.Root).Any()) Directory.Delete(run.Root);
            throw;
        }
    }

    private static TaskOutcome TrainLocked(ClassifyRun run, TrainRequest request, Action<string>? info, Action<int, int, double>? progress, CancellationToken cancel)
    {
        using var runLock = RunLock.Acquire(run.Root, info);
        using var taskScope = torch.NewDisposeScope(); // every temporary of the task, whatever the method does
        var manifest = run.Exists ? run.Read() : null;
        int expected = (manifest?.Tasks.Count ?? 0) + 1;
        if (request.Task != expected)
            throw new InputException(manifest is null
                ? $"--task {request.Task}: {run.Root} has no classification run yet, so the first task is 1"
                : $"--task {request.Task}: {run.Root} has finished tasks 1..{manifest.Tasks.Count}, so the next is {expected}");
        var method = request.Method ?? manifest?.Method ?? "clora";
        if (manifest is not null && method != manifest.Method)
            throw new InputException($"--method {method}: this run learns with {manifest.Method} (a run keeps one method; start a new --run for another)");
        if (!ClassifyMethods.Names.Contains(method)) throw new InputException($"--method {method}: expected one of {string.Join(", ", ClassifyMethods.Names)}");
        if (!ClassifyMethods.IsContinual(method) && request.Task > 1)
            throw new InputException($"--task {request.Task}: joint learns every class at once in task 1 (it is the non-continual upper bound)");
        if ((request.Classes is null) == (request.ImagesDir is null))
            throw new InputException("give exactly one of --classes (MNIST digits) and --images (a folder of class folders)");
        string dataset = request.ImagesDir is null ? "mnist" : "folders";
        if (manifest is not null && manifest.Dataset != dataset)
            throw new InputException($"this run learns from {manifest.Dataset} ({(manifest.Dataset == "mnist" ? "--classes" : "--images")}); every task of a run uses the same source");

        var backbonePath = BackboneOf(run, manifest, request.BackbonePath);
        var hash = RunDirectory.Sha256File(backbonePath);
        if (manifest is not null && manifest.Backbone.Sha256 != hash)
            throw new InputException($"--backbone {backbonePath}: SHA-256 {hash[..12]}… is not the backbone {run.ManifestPath} was trained on ({manifest.Backbone.Path}, {manifest.Backbone.Sha256[..12]}…)");
        var options = request.Options ?? manifest?.Options ?? new ClassifyOptions();

        var (backbone, backboneInfo) = VitCheckpoint.Load(backbonePath);
        using var _ = backbone;
        int side = backbone.Config.ImageSize;

        // The task's images and the run's class names.
        LabeledImages train;
        IReadOnlyList<string> classNames;
        if (request.Classes is { } classes)
        {
            if (backbone.Config.ImageSize != MnistDigits.Side || backbone.Config.InChannels != 1)
                throw new InputException($"--backbone {backbonePath}: takes {backbone.Config.ImageSize}×{backbone.Config.ImageSize}×{backbone.Config.InChannels} images; the MNIST digits are 28×28×1");
            var bad = classes.FirstOrDefault(c => c < 0 || c > 9, -1);
            if (bad >= 0 || classes.Count == 0) throw new InputException($"--classes: expected digits 0..9, got {string.Join(",", classes)}");
            var (all, _) = MnistDigits.Load(request.MnistTarball, info);
            train = all.OfClasses(classes.ToHashSet());
            classNames = MnistDigits.ClassNames;
        }
        else
        {
            if (backbone.Config.InChannels != 1) throw new InputException($"--backbone {backbonePath}: takes {backbone.Config.InChannels}-channel images; class folders are read as grey");
            train = ClassFolders.Load(request.ImagesDir!, side, manifest?.ClassNames ?? [], info);
            classNames = train.ClassNames;
        }
        var taskClasses = train.Labels.Distinct().Order().ToList();
        var learned = manifest?.Tasks.SelectMany(t => t.Classes).ToHashSet() ?? [];
        var again = taskClasses.FirstOrDefault(learned.Contains, -1);
        if (again >= 0) throw new InputException($"class '{classNames[again]}' was learned in an earlier task; a class-incremental task brings new classes");

        using var learner = ClassifyMethods.Create(method, backbone, options);
        if (manifest is not null && manifest.Tasks.Count > 0)
            Restore(run, manifest, learner);
        cancel.ThrowIfCancellationRequested();

        var checkpoint = new ClassifyTaskCheckpoint(run.CheckpointPath(request.Task),
            ClassifyTaskCheckpoint.Identity(request.Task, method, hash, options, taskClasses, train.ContentHash(), manifest?.Tasks[^1].StateSha256));
        Dictionary<string, Tensor>? resumeFrom = null;
        if (request.Resume) resumeFrom = checkpoint.Load(request.Task);
        else if (checkpoint.Exists) info?.Invoke($"{checkpoint.Path}: an interrupted run of task {request.Task} exists; starting over (pass --resume to continue it)");
        long? resumedAfter = resumeFrom is null ? null : resumeFrom.TryGetValue("step", out var at) && at.numel() == 1 && !at.is_floating_point() ? at.item<long>() : -1;
        info?.Invoke($"task {request.Task}: {method} learns {string.Join(", ", taskClasses.Select(c => classNames[c]))} from {train.Count} images"
            + (resumedAfter is { } r ? $" (resuming after step {r})" : ""));
        ClassTaskTrainer.Result result;
        try
        {
            result = ClassTaskTrainer.LearnTask(learner, taskClasses, train, progress, cancel,
                new ClassTaskTrainer.Checkpointing(request.CheckpointEvery, checkpoint.Save, resumeFrom, checkpoint.Path));
        }
        finally { if (resumeFrom is not null) foreach (var t in resumeFrom.Values) t.Dispose(); }
        cancel.ThrowIfCancellationRequested();

        // Scored before the commit, so a failure here leaves the run as it was.
        var tasks = (manifest?.Tasks.Select(t => t.Classes) ?? []).Append(taskClasses).ToList();
        double[]? perTask = null; double? overall = null;
        if (dataset == "mnist") (perTask, overall) = Score(learner, dataset, null, request.MnistTarball, tasks, side, classNames, info);

        // Commit: the state file first, then the manifest that names it.
        Directory.CreateDirectory(run.StatesDir);
        var statePath = run.StatePath(request.Task);
        var state = learner.State();
        try { SafeTensorsFile.Save(statePath, state, new Dictionary<string, string> { ["method"] = method, ["task"] = request.Task.ToString() }); }
        finally { foreach (var t in state.Values) t.Dispose(); }
        var entry = new ClassifyTaskEntry
        {
            Task = request.Task, Classes = taskClasses, TrainImages = train.Count, Steps = result.Steps, FinalLoss = result.FinalLoss,
            Seconds = result.Seconds, State = ClassifyRun.StateFileName(request.Task), StateSha256 = RunDirectory.Sha256File(statePath),
            TrainedValues = learner.TrainableGroups().Sum(g => g.Parameters.Sum(p => p.numel())),
            Options = options,
        };
        var updated = (manifest ?? new ClassifyManifest
        {
            Method = method, Backbone = new ClassifyManifest.BackboneRef(backbonePath, hash), Options = options, Dataset = dataset, ClassNames = classNames,
        }) with { ClassNames = classNames, Tasks = [.. manifest?.Tasks ?? [], entry] };
        run.Write(updated);
        checkpoint.Delete();
        return new TaskOutcome(entry, classNames, perTask, overall, resumedAfter);
    }

    public sealed record EvalOutcome(ClassifyManifest Manifest, double[] AccuracyPerTask, double Accuracy);

    /// The run's accuracy after its last task on the test images of every class it learned: the MNIST test split,
    /// or `imagesDir` (class folders named like the run's classes).
    public static EvalOutcome Evaluate(string runDir, string? backbonePath, string? imagesDir, string? mnistTarball = null, Action<string>? info = null)
    {
        var run = new ClassifyRun(runDir);
        var manifest = run.Read();
        if (manifest.Tasks.Count == 0) throw new InputException($"{run.ManifestPath}: no finished task to evaluate");
        var problems = run.VerifyIntegrity(manifest);
        if (problems.Count > 0) throw new InputException(problems[0]);
        var path = BackboneOf(run, manifest, backbonePath);
        if (RunDirectory.Sha256File(path) != manifest.Backbone.Sha256)
            throw new InputException($"--backbone {path}: is not the backbone {run.ManifestPath} was trained on (SHA-256 differs)");
        using var scope = torch.NewDisposeScope();
        var (backbone, _) = VitCheckpoint.Load(path);
        using var _b = backbone;
        using var learner = ClassifyMethods.Create(manifest.Method, backbone, manifest.Options);
        Restore(run, manifest, learner);
        if (manifest.Dataset == "folders" && imagesDir is null)
            throw new InputException("--images: this run learned from class folders; give a folder of test class folders named like its classes");
        var tasks = manifest.Tasks.Select(t => t.Classes).ToList();
        var (perTask, overall) = Score(learner, imagesDir is null ? manifest.Dataset : "folders", imagesDir, mnistTarball, tasks, backbone.Config.ImageSize, manifest.ClassNames, info);
        return new EvalOutcome(manifest, perTask, overall);
    }

    /// The backbone a task or an evaluation uses: the one given, else the run's (an error naming the manifest when it
    /// has moved), else (a new run) an error.
    private static string BackboneOf(ClassifyRun run, ClassifyManifest? manifest, string? given)
    {
        if (given is not null) return RequireFile(given, "--backbone");
        if (manifest is null) throw new InputException("--backbone: a new run needs a backbone (a ViT written by `cdiff classify pretrain`)");
        if (!File.Exists(manifest.Backbone.Path))
            throw new InputException($"{run.ManifestPath}: the run's backbone {manifest.Backbone.Path} is not there any more; pass --backbone with where it is now");
        return manifest.Backbone.Path;
    }

    /// Problems with the run's backbone: missing, or not the bytes the run was trained on.
    public static IReadOnlyList<string> BackboneProblems(ClassifyRun run, ClassifyManifest manifest)
    {
        if (!File.Exists(manifest.Backbone.Path)) return [$"{run.ManifestPath}: the backbone {manifest.Backbone.Path} is missing (moved? `eval` and `train` take --backbone)"];
        var hash = RunDirectory.Sha256File(manifest.Backbone.Path);
        return hash == manifest.Backbone.Sha256 ? [] : [$"{run.ManifestPath}: the backbone {manifest.Backbone.Path} has SHA-256 {hash[..12]}…, the run was trained on {manifest.Backbone.Sha256[..12]}…"];
    }

    /// The full path of an existing file, or an error naming the option.
    public static string RequireFile(string path, string option)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new InputException($"{option} {full}: is a folder, expected a file");
        if (!File.Exists(full)) throw new InputException($"{option} {full}: file not found");
        return full;
    }

    private static void Restore(ClassifyRun run, ClassifyManifest manifest, ClassIncrementalLearner learner)
    {
        var last = manifest.Tasks[^1];
        var path = run.StatePath(last.Task);
        if (!File.Exists(path)) throw new InputException($"{path}: the state of task {last.Task} is missing");
        if (RunDirectory.Sha256File(path) != last.StateSha256) throw new InputException($"{path}: SHA-256 differs from the manifest's (the file was changed or damaged)");
        var state = SafeTensorsFile.Load(path);
        try { learner.Restore([.. manifest.Tasks.Select(t => t.Classes)], state); }
        catch (InputException e) { throw new InputException($"{path}: {e.Message}"); } // name the file the state came from
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    private static (double[] PerTask, double Overall) Score(ClassIncrementalLearner learner, string dataset, string? imagesDir, string? mnistTarball,
        IReadOnlyList<IReadOnlyList<int>> tasks, int side, IReadOnlyList<string> classNames, Action<string>? info)
    {
        LabeledImages test;
        if (dataset == "mnist") test = MnistDigits.Load(mnistTarball, info).Test;
        else
        {
            var folders = ClassFolders.Load(imagesDir!, side, classNames, info);
            if (folders.ClassNames.Count > classNames.Count)
                throw new InputException($"--images {imagesDir}: class folder '{folders.ClassNames[classNames.Count]}' is not a class this run learned ({string.Join(", ", classNames)})");
            test = folders;
        }
        using var noGrad = torch.no_grad();
        var perTask = ClassifyEvaluation.AccuracyPerTask(learner, test, tasks);
        return (perTask, ClassifyEvaluation.Overall(learner, test, tasks));
    }
}
