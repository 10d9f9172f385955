using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Interop.Export;
using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Cli;

/// `cdiff status` on a finished run (SyntheticRun: no training).
public class StatusCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-status-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// A task whose training met non-finite steps says so (the manifest's retried/dropped counts); the others do not.
    [Fact]
    public void Status_names_the_tasks_with_non_finite_steps()
    {
        var run = SyntheticRun.Create(_dir, 2, 2);
        var m = run.ReadManifest();
        run.WriteManifest(m with { Tasks = [m.Tasks[0], m.Tasks[1] with { RetriedSteps = 2, DroppedSteps = 1 }] });

        var status = CliRunner.Run("status", "--run", _dir);
        Assert.Equal(0, status.ExitCode);
        Assert.Equal("non-finite   task 2: 2 steps computed again after non-finite gradients, 1 update dropped (of 2)",
            Assert.Single(status.Stdout.Split('\n'), l => l.StartsWith("non-finite", StringComparison.Ordinal)).TrimEnd());
        Assert.Contains("integrity    ok", status.Stdout);

        run.WriteManifest(m);
        Assert.DoesNotContain("non-finite", CliRunner.Run("status", "--run", _dir).Stdout);
    }
}
