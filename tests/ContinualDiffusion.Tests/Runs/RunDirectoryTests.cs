using System.Text.Json;
using ContinualDiffusion.Runs;

namespace ContinualDiffusion.Tests.Runs;

public class RunDirectoryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-run-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TaskEntry Entry(int task, string file, string sha, long bytes) => new()
    {
        Task = task, Token = $"<v{task}>", TokenId = 49407 + task, AdapterFile = file, AdapterSha256 = sha, AdapterBytes = bytes,
        ImageSetHash = "abc", ImageCount = 3, Method = "clora", Rank = 4, Lambda = 1e8, Steps = 10, LearningRate = 1e-4,
        Seed = 0, FinalLoss = 0.1, WallTimeSeconds = 1.5, FinishedUtc = DateTimeOffset.UnixEpoch,
    };

    [Fact]
    public void Manifest_round_trips_and_integrity_check_finds_a_changed_adapter()
    {
        var run = new RunDirectory(_dir);
        Assert.Null(run.TryReadManifest());
        Directory.CreateDirectory(run.AdaptersDir);
        File.WriteAllBytes(run.AdapterPath(1), [1, 2, 3]);
        var rel = Path.GetRelativePath(_dir, run.AdapterPath(1));
        var m = new RunManifest { BaseModel = new BaseModelInfo("/m", "h"), Method = "clora", Tasks = [] };
        m.Tasks.Add(Entry(1, rel, RunDirectory.Sha256File(run.AdapterPath(1)), 3));
        run.WriteManifest(m);
        var back = run.ReadManifest();
        Assert.Equal(1, back.LastTask);
        Assert.Equal("<v1>", back.Tasks[0].Token);
        Assert.Empty(run.VerifyIntegrity(back));

        File.WriteAllBytes(run.AdapterPath(1), [1, 2, 4]);
        Assert.Contains("SHA-256", Assert.Single(run.VerifyIntegrity(back)));
        File.Delete(run.AdapterPath(1));
        Assert.Contains("missing", Assert.Single(run.VerifyIntegrity(back)));
    }

    /// A task's non-finite step counts are written only when not zero (the manifest of a task without any is the
    /// same as before they existed) and must lie between 0 and the task's steps.
    [Fact]
    public void Non_finite_step_counts_are_written_only_when_not_zero_and_checked()
    {
        var run = new RunDirectory(_dir);
        Directory.CreateDirectory(run.AdaptersDir);
        File.WriteAllBytes(run.AdapterPath(1), [1, 2, 3]);
        var entry = Entry(1, Path.GetRelativePath(_dir, run.AdapterPath(1)), RunDirectory.Sha256File(run.AdapterPath(1)), 3);
        var m = new RunManifest { BaseModel = new BaseModelInfo("/m", "h"), Method = "clora", Tasks = [entry] };
        run.WriteManifest(m);
        Assert.DoesNotContain("retried_steps", File.ReadAllText(run.ManifestPath));
        Assert.DoesNotContain("dropped_steps", File.ReadAllText(run.ManifestPath));
        Assert.Equal((0, 0), (run.ReadManifest().Tasks[0].RetriedSteps, run.ReadManifest().Tasks[0].DroppedSteps));

        run.WriteManifest(m with { Tasks = [entry with { RetriedSteps = 3, DroppedSteps = 1 }] });
        Assert.Contains("\"retried_steps\": 3", File.ReadAllText(run.ManifestPath));
        Assert.Equal((3, 1), (run.ReadManifest().Tasks[0].RetriedSteps, run.ReadManifest().Tasks[0].DroppedSteps));

        foreach (var (written, bad) in new[] { ("\"retried_steps\": 3", "\"retried_steps\": -1"), ("\"dropped_steps\": 1", "\"dropped_steps\": 11"), ("\"retried_steps\": 3", "\"retried_steps\": 11"), ("\"retried_steps\": 3", "\"retried_steps\": 1.5") })
        {
            var json = File.ReadAllText(run.ManifestPath);
            Assert.Contains(written, json);
            File.WriteAllText(run.ManifestPath, json.Replace(written, bad));
            var e = Assert.Throws<InputException>(() => run.ReadManifest());
            Assert.Contains(run.ManifestPath, e.Message);
            run.WriteManifest(m with { Tasks = [entry with { RetriedSteps = 3, DroppedSteps = 1 }] });
        }
    }

    [Fact]
    public void A_malformed_manifest_is_an_error_naming_the_file()
    {
        var run = new RunDirectory(_dir);
        File.WriteAllText(run.ManifestPath, "{\"format_version\": 1, \"base_model\": ");
        var e = Assert.Throws<InputException>(() => run.ReadManifest());
        Assert.Contains(run.ManifestPath, e.Message);
    }

    [Fact]
    public void A_second_lock_on_the_same_run_is_refused_while_the_first_is_held()
    {
        using (var first = RunLock.Acquire(_dir))
        {
            File.WriteAllText(Path.Combine(_dir, RunLock.FileName),
                JsonSerializer.Serialize(new { Pid = 1, Host = Environment.MachineName, StartedUtc = DateTimeOffset.UtcNow }));
            // pid 1 (init) is alive: the lock is genuinely held
            var e = Assert.Throws<InputException>(() => RunLock.Acquire(_dir));
            Assert.Contains("pid 1", e.Message);
        }
        Assert.False(File.Exists(Path.Combine(_dir, RunLock.FileName)));
    }

    [Fact]
    public void A_stale_lock_is_reported_and_taken_over()
    {
        // a PID far above pid_max's default cannot be alive
        File.WriteAllText(Path.Combine(_dir, RunLock.FileName),
            JsonSerializer.Serialize(new { Pid = 99_999_999, Host = Environment.MachineName, StartedUtc = DateTimeOffset.UtcNow }));
        var told = new List<string>();
        using var l = RunLock.Acquire(_dir, told.Add);
        Assert.Contains("stale lock of pid 99999999", Assert.Single(told));
    }
}
