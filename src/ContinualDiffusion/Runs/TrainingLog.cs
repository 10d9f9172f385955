using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Runs;

/// A task's per-step training log, `logs/task-003.csv` in the run directory (what kohya and OneTrainer send to
/// TensorBoard, as a CSV any plotting tool reads): step, loss, mse, penalty, grad_norm (before clipping), lr and
/// token_lr (after the schedule), seconds, applied (0 for a dropped half-precision step). While the task trains the
/// rows go to `log.csv` in its checkpoint folder (in-progress state, as the checkpoint is), flushed per step; a
/// `--resume` keeps the rows up to the checkpoint's step and continues; a fresh start replaces them; the commit moves
/// the file to `logs/`, so the log of a finished task is that task's, and a failed retraining leaves it as it was.
public sealed class TrainingLog : IDisposable
{
    public const string Header = "step,loss,mse,penalty,grad_norm,lr,token_lr,seconds,applied";

    private readonly StreamWriter _writer;
    private readonly double _lr, _tokenLr;

    public string PartialPath { get; }

    private TrainingLog(string partialPath, StreamWriter writer, double lr, double tokenLr)
    {
        PartialPath = partialPath;
        _writer = writer;
        _lr = lr;
        _tokenLr = tokenLr;
    }

    /// Starts at `partial` (or, with `resumedAt`, continues there after that step) the log that Commit moves.
    public static TrainingLog Open(string partial, TrainingConfig config, int? resumedAt)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(partial)!);
        var kept = new List<string> { Header };
        if (resumedAt is { } last && File.Exists(partial))
            kept.AddRange(File.ReadLines(partial).Skip(1).TakeWhile(line => StepOf(line) is { } s && s <= last));
        AtomicFile.WriteAllText(partial, string.Join('\n', kept) + "\n");
        var writer = new StreamWriter(new FileStream(partial, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true, NewLine = "\n" };
        return new TrainingLog(partial, writer, config.LearningRate, config.TokenLearningRate);
    }

    private static int? StepOf(string line)
    {
        int comma = line.IndexOf(',');
        return comma > 0 && int.TryParse(line.AsSpan(0, comma), NumberStyles.None, CultureInfo.InvariantCulture, out int s) ? s : null;
    }

    public void Append(TrainStepReport r)
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        _writer.WriteLine(string.Join(',', r.Step.ToString(CultureInfo.InvariantCulture), F(r.Loss), F(r.Mse), F(r.Penalty), F(r.GradNorm),
            F(_lr * r.LrFactor), F(_tokenLr * r.LrFactor), r.StepSeconds.ToString("F4", CultureInfo.InvariantCulture), r.Applied ? "1" : "0"));
    }

    /// Closes the log and puts it at `path` (replacing a retrained task's log).
    public void Commit(string path)
    {
        _writer.Dispose();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.Move(PartialPath, path, overwrite: true);
    }

    public void Dispose() => _writer.Dispose();
}
