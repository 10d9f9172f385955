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
