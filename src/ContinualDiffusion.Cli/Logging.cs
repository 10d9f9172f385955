using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace ContinualDiffusion.Cli;

/// Serilog set-up: human lines on stderr (so stdout stays clean for results), JSON lines in --log-file.
internal static class Logging
{
    public static ILogger Create(string level, string? file)
    {
        var min = level switch
        {
            "debug" => LogEventLevel.Debug,
            "warning" => LogEventLevel.Warning,
            "error" => LogEventLevel.Error,
            _ => LogEventLevel.Information,
        };
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(min)
            .WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss} {Level:u3} {Message:lj}{NewLine}",
                standardErrorFromLevel: LogEventLevel.Verbose);
        if (file is not null)
            config = config.WriteTo.File(new CompactJsonFormatter(), file, restrictedToMinimumLevel: LogEventLevel.Debug);
        return config.CreateLogger();
    }
}
