using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Evaluation.Reporting;

namespace ContinualDiffusion.Tests.Benchmarking;

public class RunCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cache-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static MethodRun Run() => new() { Method = "clora", Lambda = 1, Seed = 0, R = [[0.5]], Mmd = [[0.1]] };

    [Fact]
    public void A_cached_run_is_reused_only_with_the_same_fingerprint_and_a_mismatch_says_where_it_differs()
    {
        var cache = new RunCache(_dir);
        Assert.Null(cache.Mismatch("clora", 0, "anything")); // nothing cached
        cache.Save("clora", 0, "{\"tasks\":5,\"samples\":100,\"guidance\":7.5}", Run());

        Assert.NotNull(cache.TryLoad("clora", 0, "{\"tasks\":5,\"samples\":100,\"guidance\":7.5}"));
        Assert.Null(cache.Mismatch("clora", 0, "{\"tasks\":5,\"samples\":100,\"guidance\":7.5}"));

        Assert.Null(cache.TryLoad("clora", 0, "{\"tasks\":5,\"samples\":50,\"guidance\":7.5}"));
        var why = cache.Mismatch("clora", 0, "{\"tasks\":5,\"samples\":50,\"guidance\":7.5}");
        Assert.NotNull(why);
        Assert.Contains("\"samples\":100", why);
        Assert.Contains("\"samples\":50", why);
        Assert.Contains(cache.PathOf("clora", 0), why);
    }
}
