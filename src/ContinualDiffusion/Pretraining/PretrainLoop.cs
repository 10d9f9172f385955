using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// The optimisation loop both pretraining stages share: AdamW on the warm-up + cosine schedule, gradient
/// clipping, the non-finite step guard, one dispose scope per step, cancellation and progress. A stage only
/// says how to compute one batch's loss.
internal static class PretrainLoop
{
    private const double MaxGradNorm = 1.0;

    /// Runs `steps` steps of `lossOf(step)` (a scalar built inside the step's dispose scope) and returns the
    /// last step's loss. `lossOf` is called twice for a step the guard retries; each call draws a fresh batch.
    public static double Run(string stage, int steps, IReadOnlyList<TorchSharp.Modules.Parameter> parameters, double learningRate, double weightDecay,
        Func<int, Tensor> lossOf, Action<PretrainStep>? afterStep, Action<string>? info, CancellationToken cancel)
    {
        using var optimizer = new AdamW([new AdamW.Group(stage, parameters.Cast<Tensor>().ToList(), learningRate, WeightDecay: weightDecay)]);
        var guard = new NonFiniteStepGuard(stage);
        double last = double.NaN;
        for (int step = 1; step <= steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            (double Loss, double GradNorm) Compute()
            {
                var loss = lossOf(step);
                optimizer.ZeroGrad();
                loss.backward();
                return (loss.item<float>(), nn.utils.clip_grad_norm_(parameters, MaxGradNorm));
            }
            (last, bool apply) = guard.Run(step, Compute, info);
            if (apply) optimizer.Step(LearningRateSchedule.Scale(step, steps));
            afterStep?.Invoke(new PretrainStep(stage, step, steps, last));
        }
        return last;
    }
}
