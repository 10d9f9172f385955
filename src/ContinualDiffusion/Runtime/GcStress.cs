namespace ContinualDiffusion.Runtime;

/// A background thread that runs full blocking garbage collections and finalizers in a tight loop, so that any
/// correctness that depends on when the finalizer runs shows up at once instead of once in a dozen runs.
///
/// Switched on by an environment variable: `CDIFF_TEST_GC_STRESS=1` in the test assembly (its module
/// initializer), `CDIFF_GC_STRESS=1` in the `cdiff` executable. Every collection also promotes whatever is
/// unreachable to the finalizer queue, so a tensor whose native handle is still in use by libtorch when its
/// managed object is collected is disposed right then: the use-after-free that TensorOwnership rules out.
public static class GcStress
{
    private static Thread? _thread;
    private static long _collections;

    /// Collections done so far (for the log line at the end of a run).
    public static long Collections => Interlocked.Read(ref _collections);

    public static bool Enabled(string variable) => Environment.GetEnvironmentVariable(variable) is "1" or "true";

    /// Starts the stress thread once per process; later calls do nothing. Returns true when it runs.
    public static bool StartIf(string variable)
    {
        if (!Enabled(variable)) return false;
        lock (typeof(GcStress))
        {
            if (_thread is not null) return true;
            _thread = new Thread(Loop) { IsBackground = true, Name = "cdiff GC stress", Priority = ThreadPriority.BelowNormal };
            _thread.Start();
        }
        return true;
    }

    private static void Loop()
    {
        while (true)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Interlocked.Increment(ref _collections);
        }
    }
}
