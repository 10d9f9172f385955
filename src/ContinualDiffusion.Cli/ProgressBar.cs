using System.Diagnostics;
using Serilog;

namespace ContinualDiffusion.Cli;

/// Step progress: a redrawn bar on an interactive terminal, a log line every few seconds otherwise
/// (CI logs, pipes), so long runs always show that they are alive.
internal sealed class ProgressBar(string label, int total, TextWriter terminal)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private TimeSpan _lastLog = TimeSpan.Zero;

    public void Report(int done, string? extra = null)
    {
        double rate = done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        var eta = TimeSpan.FromSeconds(rate > 0 ? (total - done) / rate : 0);
        string text = $"{label} {done}/{total} {extra} {rate:F2} it/s ETA {eta:hh\\:mm\\:ss}";
        if (_interactive)
        {
            int width = 24, filled = total == 0 ? width : width * done / total;
            terminal.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {text}   ");
            if (done == total) terminal.WriteLine();
        }
        else if (done == total || _clock.Elapsed - _lastLog >= TimeSpan.FromSeconds(10))
        {
            _lastLog = _clock.Elapsed;
            Log.Information("{Label} {Done}/{Total} {Extra} {Rate:F2} it/s ETA {Eta}", label, done, total, extra ?? "", rate, eta.ToString(@"hh\:mm\:ss"));
        }
    }
}

/// One progress bar per stage of a multi-stage job (pretraining's "vae" then "unet", a benchmark's tasks): a new
/// bar starts, with its own rate and ETA, whenever the reported stage changes.
internal sealed class StagedProgressBar(TextWriter terminal)
{
    private string? _stage;
    private ProgressBar? _bar;

    public void Report(string stage, int done, int total, double loss)
    {
        if (stage != _stage) { _stage = stage; _bar = new ProgressBar(stage, total, terminal); }
        _bar!.Report(done, $"loss {loss:F4}");
    }
}
