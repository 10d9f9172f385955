using ContinualDiffusion.Training;

namespace ContinualDiffusion.Benchmarking;

/// What a benchmark reports while it runs, so a long run always shows where it is.
public interface IBenchmarkProgress
{
    /// A phase began or ended ("clora seed 0: task 2/5, <v2> = coat"), or a score came in.
    void Info(string message);

    /// One training step of the current task (`what` names the run and task).
    void TrainStep(string what, TrainStepReport step);
}

/// Progress that goes nowhere (tests, library callers that do not care).
public sealed class SilentProgress : IBenchmarkProgress
{
    public static readonly SilentProgress Instance = new();
    public void Info(string message) { }
    public void TrainStep(string what, TrainStepReport step) { }
}
