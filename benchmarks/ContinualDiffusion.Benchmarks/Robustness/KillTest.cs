namespace ContinualDiffusion.Benchmarks.Robustness;

/// `kill -9` of a training `cdiff` process at random moments (loading, training, checkpoint writes, the commit),
/// then what a user does next: `status`, `sample --run`, and training the task again (`--resume` when a
/// checkpoint exists). Each must work, and the manifest must list only tasks whose adapters are intact.
public static class KillTest
{
    public static void Run(Workspace w, CliWorker worker, int kills, int seed, FamilyTally tally, Action<string> progress)
    {
        var run = w.Fresh(w.Run, "kills");
        // A full task-2 training, timed once, sets the range the kill moments are drawn from.
        var probe = w.Fresh(w.Run, "kills-timing");
        string Checkpoint(int task) => Path.Combine(run, "checkpoints", $"task-{task:D3}", "state.safetensors");

        KillLoop.Run("kills", tally, kills, new Random(seed), TrainArgs(w, probe, 2, resume: false), next: () =>
        {
            int task = new Runs.RunDirectory(run).ReadManifest().LastTask + 1;
            bool resume = File.Exists(Checkpoint(task));
            return new KillLoop.Attempt(TrainArgs(w, run, task, resume), $"task {task}{(resume ? ", resumed" : "")}");
        }, recover: () =>
        {
            var problems = new List<string>();
            var status = worker.Run("status", "--run", run);
            if (status.Crashed || status.ExitCode != 0) problems.Add($"status exit {status.ExitCode}: {KillLoop.Last(status.Stderr)}");
            var after = new Runs.RunDirectory(run).ReadManifest();
            var integrity = new Runs.RunDirectory(run).VerifyIntegrity(after);
            if (integrity.Count > 0) problems.Add("manifest lists a damaged task: " + integrity[0]);
            if (after.Tasks.Select(t => t.Task).Order().SequenceEqual(Enumerable.Range(1, after.Tasks.Count)) is false)
                problems.Add("manifest tasks are not 1..n");
            var sample = worker.Run("sample", "--run", run, "--prompt", $"a photo of <v{after.LastTask}>", "--steps", "1", "--seed", "1",
                "--out", Path.Combine(w.Scratch, "kill-samples"));
            if (sample.Crashed || sample.ExitCode != 0) problems.Add($"sample exit {sample.ExitCode}: {KillLoop.Last(sample.Stderr)}");
            // Finish the interrupted task, resuming when the killed process left a checkpoint.
            int next = after.LastTask + 1;
            bool hasCheckpoint = File.Exists(Checkpoint(next));
            var again = worker.Run(TrainArgs(w, run, next, hasCheckpoint));
            if (again.Crashed || again.ExitCode != 0) problems.Add($"train --task {next}{(hasCheckpoint ? " --resume" : "")} exit {again.ExitCode}: {KillLoop.Last(again.Stderr)}");
            return new KillLoop.Recovery(problems, $"status, sample and {(hasCheckpoint ? "--resume" : "a fresh run")} of task {next} fine");
        }, progress);
    }

    private static string[] TrainArgs(Workspace w, string run, int task, bool resume) =>
        ["train", "--task", $"{task}", "--images", w.Images, "--run", run, "--steps", "30", "--rank", "2", "--checkpoint-every", "3",
         "--seed", "5", .. resume ? new[] { "--resume" } : []];
}
