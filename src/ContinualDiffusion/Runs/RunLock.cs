using System.Diagnostics;
using System.Text.Json;

namespace ContinualDiffusion.Runs;

/// Stops two trainings on one run directory. The lock file holds the owner's PID, host and start time;
/// a lock whose process is gone (same host) is stale: it is reported and taken over.
public sealed class RunLock : IDisposable
{
    public const string FileName = ".lock";
    private readonly string _path;
    private bool _released;

    private RunLock(string path) => _path = path;

    private sealed record Owner(int Pid, string Host, DateTimeOffset StartedUtc);

    /// Acquires the lock or throws InputException naming the process that holds it.
    /// `onStale` is told when a dead owner's lock is taken over.
    public static RunLock Acquire(string runDir, Action<string>? onStale = null)
    {
        Directory.CreateDirectory(runDir);
        var path = Path.Combine(runDir, FileName);
        var me = new Owner(Environment.ProcessId, Environment.MachineName, DateTimeOffset.UtcNow);
        for (int attempt = 0; attempt < 2; attempt++)
        {
            try
            {
                using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                JsonSerializer.Serialize(fs, me);
                fs.Flush(flushToDisk: true);
                return new RunLock(path);
            }
            catch (IOException) when (File.Exists(path))
            {
                var owner = ReadOwner(path);
                if (owner is not null && IsAlive(owner))
                    throw new InputException($"{runDir}: another cdiff (pid {owner.Pid} on {owner.Host}, since {owner.StartedUtc:u}) is using this run directory");
                onStale?.Invoke(owner is null
                    ? $"{path}: unreadable lock file; taking it over"
                    : $"{path}: stale lock of pid {owner.Pid} (process gone); taking it over");
                File.Delete(path);
            }
        }
        throw new InputException($"{path}: could not acquire the run lock");
    }

    private static Owner? ReadOwner(string path)
    {
        try { return JsonSerializer.Deserialize<Owner>(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or IOException) { return null; }
    }

    private static bool IsAlive(Owner o)
    {
        if (o.Host != Environment.MachineName) return true; // cannot check another host: assume it is alive
        if (o.Pid == Environment.ProcessId) return false;   // our own leftover (e.g. a crashed earlier attempt)
        try
        {
            using var p = Process.GetProcessById(o.Pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    public void Dispose()
    {
        if (_released) return;
        _released = true;
        try { File.Delete(_path); } catch (IOException) { }
    }
}
