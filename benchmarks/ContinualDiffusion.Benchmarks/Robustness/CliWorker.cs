using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ContinualDiffusion.Cli;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// What one `cdiff` invocation did. Crashed: the process died of a signal or an unhandled exception, or hung past
/// the timeout. PeakRssGrowthMb: how far the resident set rose above its level before the invocation.
public sealed record CliOutcome(int ExitCode, string Stderr, bool Crashed, string CrashReason, double PeakRssGrowthMb)
{
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

/// Runs `cdiff` commands in a worker process that calls the CLI's entry point (`CliApp.Run`, exactly what the
/// executable runs) once per request, so a thousand inputs cost a thousand calls rather than a thousand process
/// starts, while a signal or a hang still kills only the worker: the input that was running is recorded as a
/// crash and a fresh worker takes the next one.
public sealed class CliWorker : IDisposable
{
    private const string ResultPrefix = "@@result ";
    private readonly string _dll;
    private readonly TimeSpan _timeout;
    private Process? _process;

    public CliWorker(TimeSpan timeout)
    {
        _dll = typeof(CliWorker).Assembly.Location;
        _timeout = timeout;
    }

    public CliOutcome Run(params string[] args)
    {
        var p = _process is { HasExited: false } ? _process : Start();
        p.StandardInput.WriteLine(JsonSerializer.Serialize(args));
        p.StandardInput.Flush();
        var read = p.StandardOutput.ReadLineAsync();
        string? line = null;
        bool finished = read.Wait(_timeout);
        if (finished) line = read.Result;
        while (line is not null && !line.StartsWith(ResultPrefix, StringComparison.Ordinal))
        {
            // Anything a command printed straight to the console; keep reading for the result line.
            read = p.StandardOutput.ReadLineAsync();
            finished = read.Wait(_timeout);
            line = finished ? read.Result : null;
        }
        if (line is null)
        {
            string reason = finished ? $"worker died ({Describe(p)})" : $"hang: no result within {_timeout.TotalSeconds:F0} s";
            Kill();
            return new CliOutcome(-1, "", true, reason, 0);
        }
        var r = JsonSerializer.Deserialize<WorkerResult>(line[ResultPrefix.Length..])!;
        return new CliOutcome(r.Exit, r.Stderr, r.Unhandled is not null, r.Unhandled ?? "", r.PeakRssGrowthMb);
    }

    private static string Describe(Process p)
    {
        if (!p.WaitForExit(5000)) return "still running";
        int code = p.ExitCode;
        return code > 128 ? $"signal {code - 128}" : $"exit {code}";
    }

    private Process Start()
    {
        Kill();
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(_dll);
        psi.ArgumentList.Add("robustness-worker");
        _process = Process.Start(psi)!;
        _process.ErrorDataReceived += (_, _) => { }; // the commands' log lines: drained, not judged
        _process.BeginErrorReadLine();
        return _process;
    }

    private void Kill()
    {
        if (_process is null) return;
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); _process.WaitForExit(10000); }
        catch (InvalidOperationException) { }
        _process.Dispose();
        _process = null;
    }

    public void Dispose() => Kill();

    private sealed record WorkerResult(int Exit, string Stderr, string? Unhandled, double PeakRssGrowthMb);

    /// The worker side: one JSON array of arguments per stdin line, one result line per request on stdout.
    public static int Serve()
    {
        var output = Console.Out;
        Console.SetOut(TextWriter.Null); // only result lines reach the parent
        string? request;
        while ((request = Console.In.ReadLine()) is not null)
        {
            var args = JsonSerializer.Deserialize<string[]>(request)!;
            var stdout = new StringWriter(CultureInfo.InvariantCulture);
            var stderr = new StringWriter(CultureInfo.InvariantCulture);
            long before = ResetPeakRss();
            int exit;
            string? unhandled = null;
            try { exit = CliApp.Run(args, stdout, stderr); }
            catch (Exception e) { exit = -1; unhandled = $"unhandled {e.GetType().Name}: {e.Message}"; }
            double growth = Math.Max(0, PeakRssKb() - before) / 1024.0;
            output.WriteLine(ResultPrefix + JsonSerializer.Serialize(new WorkerResult(exit, stderr.ToString(), unhandled, growth)));
            output.Flush();
        }
        return 0;
    }

    /// Resets the kernel's peak-RSS mark (Linux: "5" to /proc/self/clear_refs) and returns the current RSS in kB.
    private static long ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Status("VmRSS");
    }

    private static long PeakRssKb() => Status("VmHWM");

    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
