using System.CommandLine;
using ContinualDiffusion.Cli.Commands;
using Serilog;

namespace ContinualDiffusion.Cli;

/// Exit codes: 0 success, 2 bad usage or bad input, 1 internal error.
public static class ExitCodes
{
    public const int Ok = 0, InternalError = 1, BadInput = 2, Interrupted = 130;
}

/// Builds the command tree and runs it: parse, call the library, print. Errors become one line on stderr
/// with the exit code above; the stack trace only at debug level.
public static class CliApp
{
    public static readonly Option<string> LogLevel = new("--log-level")
    {
        Description = "Log verbosity: debug, info, warning or error.",
        DefaultValueFactory = _ => "info",
        Recursive = true,
    };

    public static readonly Option<FileInfo?> LogFile = new("--log-file")
    {
        Description = "Also write structured log events to this file (JSON lines).",
        Recursive = true,
    };

    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr)
    {
        LogLevel.AcceptOnlyFromAmong("debug", "info", "warning", "error");
        var root = new RootCommand("cdiff: continual customization of text-to-image diffusion models with C-LoRA.");
        root.Options.Add(LogLevel);
        root.Options.Add(LogFile);
        root.Subcommands.Add(DoctorCommand.Create(stdout));
        root.Subcommands.Add(StatusCommand.Create(stdout));
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr, () => Cancellation.Token));
        root.Subcommands.Add(SampleCommand.Create(stdout, stderr, () => Cancellation.Token));
        root.Subcommands.Add(ExportCommand.Create(stdout));
        root.Subcommands.Add(BenchmarkCommand.Create(stdout, stderr, () => Cancellation.Token));
        root.Subcommands.Add(PretrainCommand.Create(stdout, stderr, () => Cancellation.Token));
        root.Subcommands.Add(ClassifyCommand.Create(stdout, stderr, () => Cancellation.Token));
        return root;
    }

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = BuildRoot(stdout, stderr);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"cdiff: {OneLine(string.Join("; ", parse.Errors.Select(e => e.Message)))} (see 'cdiff --help')");
            return ExitCodes.BadInput;
        }
        bool debug = parse.GetValue(LogLevel) == "debug";
        using var cancellation = Cancellation.Begin();
        Log.Logger = Logging.Create(parse.GetValue(LogLevel)!, parse.GetValue(LogFile)?.FullName);
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (UserError(e))
        {
            stderr.WriteLine($"cdiff: error: {OneLine(e.Message)}");
            if (debug) stderr.WriteLine(e);
            Log.Debug(e, "Bad input");
            return ExitCodes.BadInput;
        }
        catch (Training.TrainingDivergedException e)
        {
            // Not bad usage, yet an expected outcome: one clear line, no "internal error".
            stderr.WriteLine($"cdiff: error: {OneLine(e.Message)}");
            Log.Error("{Message}", e.Message);
            return ExitCodes.InternalError;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("cdiff: interrupted; nothing unfinished was written.");
            return ExitCodes.Interrupted;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"cdiff: internal error: {OneLine(e.Message)}{(debug ? "" : " (run with --log-level debug for details)")}");
            if (debug) stderr.WriteLine(e);
            Log.Error(e, "Internal error");
            return ExitCodes.InternalError;
        }
        finally
        {
            Log.CloseAndFlush();
        }
    }

    private static bool UserError(Exception e) =>
        e is InputException or FileNotFoundException or DirectoryNotFoundException;

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}

/// Ctrl-C / SIGTERM become a cancellation the library checks between steps, so files are never half-written.
internal static class Cancellation
{
    private static CancellationTokenSource _source = new();
    public static CancellationToken Token => _source.Token;

    public static IDisposable Begin()
    {
        _source = new CancellationTokenSource();
        var source = _source;
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; source.Cancel(); };
        Console.CancelKeyPress += onCancel;
        var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; source.Cancel(); });
        return new Registration(() => { Console.CancelKeyPress -= onCancel; sigterm.Dispose(); });
    }

    private sealed class Registration(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }
}
