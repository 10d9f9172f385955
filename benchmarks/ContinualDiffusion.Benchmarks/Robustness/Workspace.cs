using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// The valid starting points every bad input is made from: the sd-tiny model, four concept images, a run with
/// one finished task, the same run with task 2 interrupted after a checkpoint, and a latents file.
public sealed class Workspace : IDisposable
{
    public string Root { get; }
    public string Model => Path.Combine(Root, "model");
    public string Images => Path.Combine(Root, "images");
    public string Run => Path.Combine(Root, "run");
    public string RunWithCheckpoint => Path.Combine(Root, "run-checkpoint");
    public string Latents => Path.Combine(Root, "latents.safetensors");
    public string Scratch => Path.Combine(Root, "scratch");

    /// The options task 2 was started with: `--resume` needs the same ones.
    public static readonly string[] Task2Options = ["--steps", "200", "--rank", "2", "--checkpoint-every", "1", "--seed", "5"];

    public Workspace(string repoRoot, CliWorker worker)
    {
        Root = Directory.CreateTempSubdirectory("cdiff-robustness-").FullName;
        CopyDirectory(Path.Combine(repoRoot, "tests", "fixtures", "sd-tiny"), Model);
        Directory.CreateDirectory(Images);
        for (int i = 0; i < 4; i++)
        {
            using var img = new Image<Rgb24>(40, 48, new Rgb24((byte)(60 * i), 120, 200));
            img.SaveAsPng(Path.Combine(Images, $"img{i}.png"));
        }
        var t1 = worker.Run("train", "--task", "1", "--images", Images, "--model", Model, "--run", Run, "--steps", "2", "--rank", "2", "--seed", "5");
        if (t1.ExitCode != 0) throw new InvalidOperationException("could not train the seed run: " + t1.Stderr);

        CopyDirectory(Run, RunWithCheckpoint);
        InterruptAfterCheckpoint(RunWithCheckpoint);

        var unet = Models.UNetConfig.Load(Path.Combine(Model, "unet", "config.json"));
        using (TorchSharp.torch.NewDisposeScope())
        {
            var latents = TorchSharp.torch.randn(1, unet.InChannels, unet.SampleSize, unet.SampleSize);
            Checkpoints.SafeTensorsFile.Save(Latents, new Dictionary<string, TorchSharp.torch.Tensor> { ["latents"] = latents });
        }
        Directory.CreateDirectory(Scratch);
    }

    /// The adapter file of a finished task, as the run's manifest names it.
    public static string AdapterFile(string run, int task) =>
        Path.Combine(run, new Runs.RunDirectory(run).ReadManifest().Tasks.Single(t => t.Task == task).AdapterFile);

    public string CheckpointFile(string run) => Path.Combine(run, "checkpoints", "task-002", "state.safetensors");

    /// Starts task 2 as a real process and interrupts it (SIGTERM, which cdiff handles like Ctrl-C) once its first checkpoint exists:
    /// what a user has after stopping a long training.
    private void InterruptAfterCheckpoint(string run)
    {
        using var p = Cdiff.Start(["train", "--task", "2", "--images", Images, "--run", run, .. Task2Options]);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(CheckpointFile(run)) && clock.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited) Thread.Sleep(20);
        Thread.Sleep(100);
        if (!p.HasExited) Cdiff.Signal(p, "TERM"); // as a stopped job (SIGINT is ignored in background jobs)
        p.WaitForExit();
        if (!File.Exists(CheckpointFile(run)))
            throw new InvalidOperationException($"task 2 left no checkpoint to resume (exit {p.ExitCode} after {clock.Elapsed.TotalSeconds:F1} s)");
    }

    /// A fresh copy of a seed directory for one input (its own folder, deleted by the next call).
    public string Fresh(string seedDir, string name)
    {
        var dir = Path.Combine(Scratch, name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        CopyDirectory(seedDir, dir);
        return dir;
    }

    /// Points the manifest's entry for `task` at the adapter file's current bytes, so a damaged adapter reaches
    /// the adapter parser instead of stopping at the manifest's hash check.
    public static void RehashAdapter(string run, int task)
    {
        var manifestPath = Path.Combine(run, "manifest.json");
        var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
        foreach (var t in manifest["tasks"]!.AsArray())
        {
            if (t!["task"]!.GetValue<int>() != task) continue;
            var file = Path.Combine(run, t["adapter_file"]!.GetValue<string>());
            t["adapter_sha256"] = Runs.RunDirectory.Sha256File(file);
            t["adapter_bytes"] = new FileInfo(file).Length;
        }
        File.WriteAllText(manifestPath, manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    /// SHA-256 of every file (name and bytes) under a directory: equal before and after means byte-for-byte unchanged.
    public static string TreeHash(string dir)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(dir, f) + "\n"));
            if (File.Exists(f)) sha.AppendData(File.ReadAllBytes(f));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var d in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(f, Path.Combine(to, Path.GetRelativePath(from, f)), overwrite: true);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// The `cdiff` executable as a real process (for kills and signals).
public static class Cdiff
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "cdiff.dll");

    public static Process Start(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// Sends a signal (INT, KILL) to the process itself: `kill -9` of the dotnet process, not a wrapper.
    public static void Signal(Process p, string signal)
    {
        using var kill = Process.Start("kill", ["-s", signal, p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }
}
