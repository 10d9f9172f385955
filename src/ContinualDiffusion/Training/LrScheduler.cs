namespace ContinualDiffusion.Training;

/// `cdiff train --lr-scheduler` (config key `lr_scheduler`): the factor on both of a task's learning rates (the
/// adapters' and the token's) at each step, diffusers' schedules (diffusers.optimization.get_scheduler, the same as
/// kohya's and OneTrainer's of these names) evaluated as its LambdaLR evaluates them, at the number of optimizer updates
/// already made (0 at a task's first step; a dropped half-precision step is not one, as in accelerate):
///   constant               1
///   constant_with_warmup   s / W during the W warm-up steps, then 1
///   linear                 warm-up, then down to 0 at the end: (T − s) / (T − W)
///   cosine                 warm-up, then half a cosine down to 0: ½ (1 + cos(π (s − W) / (T − W)))
/// So with warm-up a task's first step has rate 0, as in diffusers. The update count is the optimizer's (kept in
/// checkpoints), so a resumed task continues the schedule where it stopped. A warm-up as long as the task is allowed
/// (the rate then never reaches its value; `cdiff train` warns).
public static class LrScheduler
{
    public const string Constant = "constant";

    public static readonly IReadOnlyList<string> Names = [Constant, "constant_with_warmup", "linear", "cosine"];

    /// Whether `name` uses the warm-up steps (every schedule but constant; diffusers ignores them for constant, cdiff
    /// refuses them there instead).
    public static bool HasWarmup(string name) => name != Constant;

    /// The factor for the `step`-th update (1-based) of `totalSteps`, with `warmupSteps` warm-up steps.
    public static double Factor(string name, int step, int totalSteps, int warmupSteps)
    {
        int s = step - 1;
        if (HasWarmup(name) && s < warmupSteps) return (double)s / Math.Max(1, warmupSteps);
        double progress = (double)(s - warmupSteps) / Math.Max(1, totalSteps - warmupSteps);
        return name switch
        {
            Constant or "constant_with_warmup" => 1,
            "linear" => Math.Max(0, (double)(totalSteps - s) / Math.Max(1, totalSteps - warmupSteps)),
            "cosine" => Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * progress))),
            _ => throw new ArgumentException($"unknown learning-rate schedule '{name}'", nameof(name)),
        };
    }
}
