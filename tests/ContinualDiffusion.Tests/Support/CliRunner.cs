using ContinualDiffusion.Cli;

namespace ContinualDiffusion.Tests.Support;

public sealed record CliResult(int ExitCode, string Stdout, string Stderr);

/// Runs the CLI in-process (same code path as the `cdiff` executable) and captures its output.
public static class CliRunner
{
    private static readonly object Gate = new(); // Serilog's static logger is process-wide

    public static CliResult Run(params string[] args)
    {
        lock (Gate)
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            int code = CliApp.Run(args, stdout, stderr);
            return new CliResult(code, stdout.ToString(), stderr.ToString());
        }
    }

    /// Runs the built `cdiff` executable (cdiff.dll next to the tests) as a separate process.
    public static CliResult RunProcess(params string[] args) => RunProcess(new Dictionary<string, string>(), args);

    /// The same with extra environment variables for the child process.
    public static CliResult RunProcess(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        RunProcessIn(null, environment, args);

    /// The same in another working directory (for defaults such as ./cdiff-run).
    public static CliResult RunProcessIn(string? workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cdiff.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return new CliResult(p.ExitCode, stdout.Result, stderr.Result);
    }
}
