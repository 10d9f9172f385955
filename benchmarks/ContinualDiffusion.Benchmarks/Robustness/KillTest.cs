using System.Diagnostics;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// `kill -9` of a training `cdiff` process at random moments (loading, training, checkpoint writes, the commit),
/// then what a user does next: `status`, `sample --run`, and training the task again (`--resume` when a
/// checkpoint exists). Each must work, and the manifest must list only tasks whose adapters are intact.
public static class KillTest
{
    public static void Run(Workspace w, CliWorker worker, int kills, int seed, FamilyTally tally, Action<string> progress)
    {
        var rng = new Random(seed);
        var run = w.Fresh(w.Run, "kills");
        // A full task-2 training, timed once, sets the range the kill moments are drawn from.
        var probe = w.Fresh(w.Run, "kills-timing");
        var clock = Stopwatch.StartNew();
        using (var p = Cdiff.Start(TrainArgs(w, probe, 2, resume: false))) p.WaitForExit();
        double full = clock.Elapsed.TotalSeconds;
        progress($"kills: one task takes {full:F1} s as a process; killing at uniform moments in [0.2 s, {full:F1} s]");

        // Attempts whose process finished before its kill moment are reported too, but do not count as kills.
        int killed = 0;
        for (int k = 0; killed < kills && k < 3 * kills; k++)
        {
            var manifest = new Runs.RunDirectory(run).ReadManifest();
            int task = manifest.LastTask + 1;
            bool resume = File.Exists(w.CheckpointFile(run).Replace("task-002", $"task-{task:D3}"));
            double at = 0.2 + rng.NextDouble() * (full - 0.2);
            using var p = Cdiff.Start(TrainArgs(w, run, task, resume));
            bool exited = p.WaitForExit(TimeSpan.FromSeconds(at));
            if (!exited) { Cdiff.Signal(p, "KILL"); killed++; }
            p.WaitForExit();
            string moment = exited ? $"finished before {at:F2} s" : $"killed at {at:F2} s";

            var problems = new List<string>();
            if (exited && p.ExitCode != 0) problems.Add($"the training process exited with {p.ExitCode} on its own");
            var status = worker.Run("status", "--run", run);
            if (status.Crashed || status.ExitCode != 0) problems.Add($"status exit {status.ExitCode}: {Last(status.Stderr)}");
            var after = new Runs.RunDirectory(run).ReadManifest();
            var integrity = new Runs.RunDirectory(run).VerifyIntegrity(after);
            if (integrity.Count > 0) problems.Add("manifest lists a damaged task: " + integrity[0]);
            if (after.Tasks.Select(t => t.Task).Order().SequenceEqual(Enumerable.Range(1, after.Tasks.Count)) is false)
                problems.Add("manifest tasks are not 1..n");
            var sample = worker.Run("sample", "--run", run, "--prompt", $"a photo of <v{after.LastTask}>", "--steps", "1", "--seed", "1",
                "--out", Path.Combine(w.Scratch, "kill-samples"));
            if (sample.Crashed || sample.ExitCode != 0) problems.Add($"sample exit {sample.ExitCode}: {Last(sample.Stderr)}");
            // Finish the interrupted task, resuming when the killed process left a checkpoint.
            int next = after.LastTask + 1;
            bool hasCheckpoint = File.Exists(Path.Combine(run, "checkpoints", $"task-{next:D3}", "state.safetensors"));
            var again = worker.Run(TrainArgs(w, run, next, hasCheckpoint));
            if (again.Crashed || again.ExitCode != 0) problems.Add($"train --task {next}{(hasCheckpoint ? " --resume" : "")} exit {again.ExitCode}: {Last(again.Stderr)}");

            bool bad = problems.Count > 0;
            tally.Add(new CaseResult("kills", $"attempt {k + 1} ({moment}, task {task}{(resume ? ", resumed" : "")})", Crash: false, WrongExit: bad,
                Accepted: true, bad ? string.Join("; ", problems) : $"{moment}; then {(hasCheckpoint ? "resumed" : "retrained")} task {next}", 0));
            progress($"attempt {k + 1} (kill {killed}/{kills}): {moment} during task {task}; {(bad ? "PROBLEM: " + string.Join("; ", problems) : $"status, sample and {(hasCheckpoint ? "--resume" : "a fresh run")} of task {next} fine")}");
        }
        progress($"kills: {killed} kill -9 in {tally.Inputs} attempts (the others finished before their moment)");
    }

    private static string[] TrainArgs(Workspace w, string run, int task, bool resume) =>
        ["train", "--task", $"{task}", "--images", w.Images, "--run", run, "--steps", "30", "--rank", "2", "--checkpoint-every", "3",
         "--seed", "5", .. resume ? new[] { "--resume" } : []];

    private static string Last(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";
}
