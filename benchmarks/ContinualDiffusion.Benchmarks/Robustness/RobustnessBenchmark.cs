using System.Diagnostics;
using System.Globalization;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// `scripts/bench.sh robustness`: feeds damaged and hostile inputs to every `cdiff` entry point that reads them
/// and prints one line per family and a last line "N inputs, N crashes, N wrong exit codes".
///
///   robustness [--per-loader 250] [--kills 20] [--classify-per-loader 100] [--classify-kills 10] [--only diffusion|classify] [--seed 0] [--timeout 120] [--report FILE]
///
/// Families: safetensors files damaged 25 ways, fed to each of the four loaders through the command that reads
/// them (model weights: `sample --model`; adapters: `sample --run`, with the manifest re-hashed so the damaged
/// file reaches the parser; run checkpoints: `train --resume`; latents: `sample --latents`); concept images;
/// training configs, model configs and run manifests (the run directory must stay byte-for-byte unchanged);
/// pickle checkpoints; and `kill -9` of training processes at random moments. Then the same for `cdiff classify`
/// (<see cref="ClassifyFamilies"/>): ViT backbones, task states and checkpoints, manifests, MNIST tarballs, kills.
public static class RobustnessBenchmark
{
    /// A refused input must not make the process grow by anything like a declared tensor size.
    private const double MaxRssGrowthMb = 1024;

    public static int Run(string[] args)
    {
        var o = Options.Parse(args);
        var repo = FindRepoRoot();
        var wall = Stopwatch.StartNew();
        using var worker = new CliWorker(TimeSpan.FromSeconds(o.TimeoutSeconds));
        using var w = new Workspace(repo, worker);
        Console.WriteLine($"workspace {w.Root} (sd-tiny, a run with one task, an interrupted task 2 with a checkpoint)");
        var tallies = new List<FamilyTally>();
        void Report(FamilyTally t) { tallies.Add(t); Console.WriteLine(t.Line()); }

        if (o.Only != "classify") Diffusion(w, worker, o, Report);
        if (o.Only != "diffusion")
        {
            var cw = new ClassifyWorkspace(Path.Combine(w.Root, "classify"), repo, worker);
            foreach (var family in ClassifyFamilies.Run(cw, worker, o.ClassifyPerLoader, o.ClassifyKills, o.Seed,
                (family, count, setup, seedFile) => ClassifySafeTensors(worker, family, count, setup, seedFile, o.Seed), Console.WriteLine))
                Report(family);
        }

        int inputs = tallies.Sum(t => t.Inputs), crashes = tallies.Sum(t => t.Crashes), wrong = tallies.Sum(t => t.WrongExits);
        if (o.ReportPath is not null) WriteDetails(o.ReportPath, tallies);
        foreach (var r in tallies.SelectMany(t => t.Results).Where(r => r.Crash || r.WrongExit).Take(40))
            Console.WriteLine($"  FAIL {r.Family} {r.Name}: {r.Detail}");
        Console.WriteLine($"robustness took {wall.Elapsed.TotalMinutes:F1} min");
        Console.WriteLine($"{inputs} inputs, {crashes} crashes, {wrong} wrong exit codes");
        return crashes + wrong == 0 ? 0 : 1;
    }

    /// The families of the diffusion commands.
    private static void Diffusion(Workspace w, CliWorker worker, Options o, Action<FamilyTally> report)
    {
        report(SafeTensorsFamily(w, worker, "safetensors/model-weights", o, (file, i) =>
        {
            string component = (i % 3) switch { 0 => "unet/diffusion_pytorch_model", 1 => "vae/diffusion_pytorch_model", _ => "text_encoder/model" };
            var model = w.Fresh(w.Model, "model");
            var target = Path.Combine(model, component + ".safetensors");
            return (target, ["sample", "--model", model, "--prompt", "a photo", "--steps", "1", "--seed", "1", "--out", Path.Combine(w.Scratch, "out")], null);
        }, seedFile: Path.Combine(w.Model, "unet", "diffusion_pytorch_model.safetensors"), perIndexSeed: i => (i % 3) switch
        {
            0 => Path.Combine(w.Model, "unet", "diffusion_pytorch_model.safetensors"),
            1 => Path.Combine(w.Model, "vae", "diffusion_pytorch_model.safetensors"),
            _ => Path.Combine(w.Model, "text_encoder", "model.safetensors"),
        }));

        report(SafeTensorsFamily(w, worker, "safetensors/adapters", o, (file, i) =>
        {
            var run = w.Fresh(w.Run, "run");
            var target = Workspace.AdapterFile(run, 1);
            return (target, ["sample", "--run", run, "--prompt", "a photo of <v1>", "--steps", "1", "--seed", "1", "--out", Path.Combine(w.Scratch, "out")],
                () => Workspace.RehashAdapter(run, 1));
        }, seedFile: Workspace.AdapterFile(w.Run, 1)));

        report(SafeTensorsFamily(w, worker, "safetensors/run-checkpoints", o, (file, i) =>
        {
            var run = w.Fresh(w.RunWithCheckpoint, "run");
            return (w.CheckpointFile(run), ["train", "--task", "2", "--images", w.Images, "--run", run, .. Workspace.Task2Options, "--resume"], null);
        }, seedFile: w.CheckpointFile(w.RunWithCheckpoint)));

        report(SafeTensorsFamily(w, worker, "safetensors/latents", o, (file, i) =>
        {
            var target = Path.Combine(w.Scratch, "latents.safetensors");
            return (target, ["sample", "--model", w.Model, "--latents", target, "--prompt", "a photo", "--steps", "1", "--out", Path.Combine(w.Scratch, "out")], null);
        }, seedFile: w.Latents));

        report(ImagesFamily(w, worker));
        report(ConfigsFamily(w, worker));
        report(PickleFamily(w, worker));
        var kills = new FamilyTally("kills");
        KillTest.Run(w, worker, o.Kills, o.Seed, kills, Console.WriteLine);
        report(kills);
    }

    private delegate (string Target, string[] Args, Action? AfterWrite) SafeTensorsSetup(byte[] mutated, int index);

    /// Damage that can leave a valid file (bytes of tensor data or of a metadata string, a big but well-formed
    /// header, offsets moved onto free bytes) may be accepted; every other kind must be refused. A run checkpoint
    /// carries a checksum of its data, so there flipped data bytes must be refused too.
    private static Expectation ExpectationFor(string kind, string family) => kind switch
    {
        "flip-header-bytes" or "huge-json-header" or "offsets-overlap" => Expectation.AcceptOrRefuse,
        "flip-data-bytes" => family.EndsWith("run-checkpoints", StringComparison.Ordinal) ? Expectation.Refuse : Expectation.AcceptOrRefuse,
        _ => Expectation.Refuse,
    };

    private static FamilyTally SafeTensorsFamily(Workspace w, CliWorker worker, string family, Options o, SafeTensorsSetup setup, string seedFile,
        Func<int, string>? perIndexSeed = null)
    {
        var tally = new FamilyTally(family);
        var seeds = new Dictionary<string, byte[]>();
        for (int i = 0; i < o.PerLoader; i++)
        {
            var source = perIndexSeed?.Invoke(i) ?? seedFile;
            if (!seeds.TryGetValue(source, out var original)) seeds[source] = original = File.ReadAllBytes(source);
            var (bytes, kind) = SafeTensorsMutator.Mutate(original, i, o.Seed);
            var (target, args, afterWrite) = setup(bytes, i);
            File.WriteAllBytes(target, bytes);
            afterWrite?.Invoke();
            // The folder that holds the damaged file (a run, a model copy): a refusal must leave it as it was.
            string? folder = args.SkipWhile(a => a is not ("--run" or "--model")).Skip(1).FirstOrDefault();
            string? before = folder is not null && Directory.Exists(folder) ? Workspace.TreeHash(folder) : null;
            tally.Add(Judge(family, $"{i} {kind}", worker.Run(args), ExpectationFor(kind, family), target, folder, before));
            if ((i + 1) % 50 == 0) Console.Error.WriteLine($"  {family}: {i + 1}/{o.PerLoader}");
        }
        return tally;
    }

    /// A safetensors family of `cdiff classify`: like <see cref="SafeTensorsFamily"/>, and a refused first task must
    /// not leave the run folder it would have made.
    private static FamilyTally ClassifySafeTensors(CliWorker worker, string family, int count,
        Func<int, (string Target, string[] Args, Action? AfterWrite, string? RunDir)> setup, string seedFile, int seed)
    {
        var tally = new FamilyTally(family);
        var original = File.ReadAllBytes(seedFile);
        for (int i = 0; i < count; i++)
        {
            var (bytes, kind) = SafeTensorsMutator.Mutate(original, i, seed);
            var (target, args, afterWrite, runDir) = setup(i);
            File.WriteAllBytes(target, bytes);
            afterWrite?.Invoke();
            string? before = runDir is not null ? Workspace.TreeHash(runDir) : null;
            var result = Judge(family, $"{i} {kind}", worker.Run(args), ExpectationFor(kind, family), target, runDir, before);
            var named = args.SkipWhile(a => a != "--run").Skip(1).FirstOrDefault();
            if (runDir is null && named is not null && !result.Accepted && !result.Crash && Directory.Exists(named))
                result = result with { WrongExit = true, Detail = $"a refused first task left its run folder: {result.Detail}" };
            tally.Add(result);
            if ((i + 1) % 50 == 0) Console.Error.WriteLine($"  {family}: {i + 1}/{count}");
        }
        return tally;
    }

    private static FamilyTally ImagesFamily(Workspace w, CliWorker worker)
    {
        var tally = new FamilyTally("images");
        foreach (var c in MalformedImages.All())
        {
            var run = w.Fresh(w.Run, "run");
            var folder = Path.Combine(w.Scratch, "concept");
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.CreateDirectory(folder);
            c.Create(folder);
            var before = Workspace.TreeHash(run);
            var r = worker.Run("train", "--task", "2", "--images", folder, "--run", run, "--steps", "2", "--rank", "2");
            tally.Add(Judge("images", c.Name, r, c.Expect, Path.Combine(folder, "a"), run, before));
        }
        return tally;
    }

    private static FamilyTally ConfigsFamily(Workspace w, CliWorker worker)
    {
        var tally = new FamilyTally("configs+manifests");
        foreach (var c in MalformedConfigs.TrainConfigs())
        {
            var run = w.Fresh(w.Run, "run");
            var config = Path.Combine(w.Scratch, "train-config.json");
            File.WriteAllText(config, c.Text);
            var before = Workspace.TreeHash(run);
            var r = worker.Run("train", "--task", "2", "--images", w.Images, "--run", run, "--config", config);
            tally.Add(Judge("configs+manifests", "train config " + c.Name, r, c.Expect, config, run, before));
        }
        foreach (var (file, c) in MalformedConfigs.ModelFiles(w.Model))
        {
            var model = w.Fresh(w.Model, "model");
            File.WriteAllText(Path.Combine(model, file), c.Text);
            var before = Workspace.TreeHash(model);
            var r = worker.Run("sample", "--model", model, "--prompt", "a photo", "--steps", "1", "--out", Path.Combine(w.Scratch, "out"));
            tally.Add(Judge("configs+manifests", "model " + c.Name, r, c.Expect, Path.Combine(model, file), model, before));
        }
        string manifest = File.ReadAllText(Path.Combine(w.Run, "manifest.json"));
        foreach (var c in MalformedConfigs.Manifests(manifest))
        {
            string[][] commands =
            [
                ["status", "--run", "{run}"],
                ["sample", "--run", "{run}", "--prompt", "a photo of <v1>", "--steps", "1", "--out", Path.Combine(w.Scratch, "out")],
                ["train", "--task", "2", "--images", w.Images, "--run", "{run}", "--steps", "2", "--rank", "2"],
            ];
            foreach (var command in commands)
            {
                var run = w.Fresh(w.Run, "run");
                File.WriteAllText(Path.Combine(run, "manifest.json"), c.Text);
                var before = Workspace.TreeHash(run);
                var r = worker.Run([.. command.Select(a => a == "{run}" ? run : a)]);
                tally.Add(Judge("configs+manifests", $"manifest {c.Name} ({command[0]})", r, c.Expect, Path.Combine(run, "manifest.json"), run, before));
            }
        }
        return tally;
    }

    private static FamilyTally PickleFamily(Workspace w, CliWorker worker)
    {
        var tally = new FamilyTally("pickles");
        byte[] zip = [(byte)'P', (byte)'K', 3, 4, .. new byte[60]];                  // torch.save's zip archive
        byte[] pickle = [0x80, 0x02, (byte)'}', (byte)'q', 0x00, (byte)'.'];          // a protocol-2 pickle: {}
        var dir = Path.Combine(w.Scratch, "pickles");
        Directory.CreateDirectory(dir);
        void Case(string name, string target, byte[] bytes, string[] args)
        {
            File.WriteAllBytes(target, bytes);
            var r = worker.Run(args);
            var result = Judge("pickles", name, r, Expectation.Refuse, target, runDir: null);
            if (!result.Crash && !result.WrongExit && !r.Stderr.Contains("arbitrary code", StringComparison.Ordinal))
                result = result with { WrongExit = true, Detail = "refused without saying why: " + r.Stderr.Trim() };
            tally.Add(result);
        }
        string Out() => Path.Combine(w.Scratch, "out");
        Case("--model model.ckpt", Path.Combine(dir, "model.ckpt"), zip, ["sample", "--model", Path.Combine(dir, "model.ckpt"), "--prompt", "x", "--out", Out()]);
        Case("--model model.pt", Path.Combine(dir, "model.pt"), pickle, ["sample", "--model", Path.Combine(dir, "model.pt"), "--prompt", "x", "--out", Out()]);
        Case("--model model.pth", Path.Combine(dir, "model.pth"), zip, ["train", "--task", "1", "--images", w.Images, "--model", Path.Combine(dir, "model.pth"), "--run", Path.Combine(dir, "run")]);
        var model = w.Fresh(w.Model, "model");
        File.Delete(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"));
        Case("unet/diffusion_pytorch_model.bin", Path.Combine(model, "unet", "diffusion_pytorch_model.bin"), zip, ["sample", "--model", model, "--prompt", "x", "--out", Out()]);
        Case("--latents latents.pt", Path.Combine(dir, "latents.pt"), pickle, ["sample", "--model", w.Model, "--latents", Path.Combine(dir, "latents.pt"), "--prompt", "x", "--out", Out()]);
        Case("--latents pickle named .safetensors", Path.Combine(dir, "latents.safetensors"), pickle, ["sample", "--model", w.Model, "--latents", Path.Combine(dir, "latents.safetensors"), "--prompt", "x", "--out", Out()]);
        Case("--latents zip named .safetensors", Path.Combine(dir, "z.safetensors"), zip, ["sample", "--model", w.Model, "--latents", Path.Combine(dir, "z.safetensors"), "--prompt", "x", "--out", Out()]);
        return tally;
    }

    /// Crash: the worker died, hung, or an exception escaped the CLI. Otherwise a refusal must be exit 2 with one
    /// stderr line naming the file (or its folder), leave `runDir` as it was, and not balloon the process.
    internal static CaseResult Judge(string family, string name, CliOutcome r, Expectation expect, string file, string? runDir, string? before = null)
    {
        if (r.Crashed) return new(family, name, true, false, false, r.CrashReason, r.PeakRssGrowthMb);
        var lines = r.StderrLines.Where(l => !l.StartsWith("sampling", StringComparison.Ordinal) && !l.StartsWith("training", StringComparison.Ordinal)).ToArray();
        if (r.ExitCode == 0 && expect == Expectation.AcceptOrRefuse)
            return new(family, name, false, false, true, "accepted", r.PeakRssGrowthMb);
        var problems = new List<string>();
        if (r.ExitCode != 2) problems.Add($"exit {r.ExitCode}");
        var errors = lines.Where(l => l.StartsWith("cdiff:", StringComparison.Ordinal)).ToArray();
        if (errors.Length != 1) problems.Add($"{errors.Length} error lines");
        string message = errors.FirstOrDefault() ?? lines.FirstOrDefault() ?? "";
        if (r.ExitCode == 2 && !Names(message, file)) problems.Add("the message does not name the file");
        if (runDir is not null && before is not null && Workspace.TreeHash(runDir) != before) problems.Add("the run directory changed");
        if (r.PeakRssGrowthMb > MaxRssGrowthMb) problems.Add($"grew by {r.PeakRssGrowthMb:F0} MB before refusing");
        return new(family, name, false, problems.Count > 0, false, problems.Count > 0 ? $"{string.Join(", ", problems)}: {message}" : message, r.PeakRssGrowthMb);
    }

    private static bool Names(string message, string file)
    {
        // The full path of the file, or of the folder that holds it (a run directory, a model component).
        var full = Path.GetFullPath(file);
        return message.Contains(full, StringComparison.Ordinal)
               || (Path.GetDirectoryName(full) is { } dir && message.Contains(dir, StringComparison.Ordinal));
    }

    private static void WriteDetails(string path, IEnumerable<FamilyTally> tallies)
    {
        using var f = new StreamWriter(path);
        foreach (var t in tallies)
        {
            f.WriteLine(t.Line());
            foreach (var r in t.Results)
                f.WriteLine($"  {(r.Crash ? "CRASH" : r.WrongExit ? "WRONG" : r.Accepted ? "accepted" : "refused")}\t{r.Name}\t{r.Detail.ReplaceLineEndings(" ")}");
        }
    }

    private static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ContinualDiffusion.sln"))) return d.FullName;
        throw new InvalidOperationException("cannot find the repository root (ContinualDiffusion.sln) above " + AppContext.BaseDirectory);
    }

    private sealed record Options(int PerLoader, int Kills, int ClassifyPerLoader, int ClassifyKills, string Only, int Seed, int TimeoutSeconds, string? ReportPath)
    {
        public static Options Parse(string[] args)
        {
            var o = BenchOptions.Parse("robustness", args, "per-loader", "kills", "classify-per-loader", "classify-kills", "only", "seed", "timeout", "report");
            return new Options(o.Int("per-loader", 250, min: 0), o.Int("kills", 20, min: 0), o.Int("classify-per-loader", 100, min: 0), o.Int("classify-kills", 10, min: 0),
                o.OneOf("only", "all", "all", "diffusion", "classify"), o.Int("seed", 0, min: int.MinValue), o.Int("timeout", 120), o.Get("report"));
        }
    }
}
