using ContinualDiffusion.Runtime;

namespace ContinualDiffusion.Training;

/// Since Models/OneDnnSafeConv, a safety net: bf16's NaNs were traced to oneDNN's backward through the 4-channel
/// conv_out (which gives wrong finite gradients too), and fp32's most likely came from there as well (the same
/// signature; 1 NaN in 30 trials of scripts/bench.sh onednn-conv); the Fashion benchmark's 33,600 fp32 training steps then
/// needed no retry (52 before), nor did 4,000 bf16 steps on it or 24 at 512² (13 of 24 non-finite before). History below.
///
/// Lets training (pretraining and `cdiff train`'s tasks) use oneDNN's convolutions, which are about 4× faster on this project's 2-core CPU
/// (VAE stage: 0.2 → 0.9 it/s measured), despite oneDNN's sporadic NaN gradients with batch ≥ 2 (see
/// TorchSetup.UseTrainingSafeKernels). The NaNs are transient: with the guard logging instead of acting,
/// 6 fresh processes of 40 UNet steps showed 0, 0, 1, 1, 1 and 6 NaN steps, scattered (steps 1, 2, 4, 21, 24, 26
/// in the worst), each followed by finite ones. So a non-finite step is computed again with
/// oneDNN off for that one step (pretraining draws a fresh batch for it, `cdiff train` the same one), and every step still updates the weights; switching oneDNN off for the whole run instead (the earlier design)
/// made the UNet stage 27% slower in one process out of three. Only a step that is non-finite without oneDNN
/// too means training diverged: it is skipped, and after a few in a row training stops.
/// With half-precision weights on the CPU (`keepOneDnnOn`) the retry keeps oneDNN on: libtorch's bf16 kernels without
/// it are unusable there (measured on the SD 1.5 architecture in bf16: a step with oneDNN 7.9 s at 512², 2.7 s at
/// 256²; without it one step had not finished after 15 min at 512², nor after 10 min at 256²), and bf16's NaNs with
/// oneDNN are transient too (at 256² a non-finite step 2 was finite when computed again).
/// `oneDnnEnabled` and `suspendOneDnn` default to the process-wide switch (TorchSetup); tests pass fakes.
internal sealed class NonFiniteStepGuard(string stage, Func<bool>? oneDnnEnabled = null, Func<IDisposable>? suspendOneDnn = null,
    bool keepOneDnnOn = false)
{
    private readonly Func<bool> _oneDnnEnabled = oneDnnEnabled ?? TorchSetup.MkldnnEnabled;
    private readonly Func<IDisposable> _suspendOneDnn = suspendOneDnn ?? TorchSetup.SuspendMkldnn;
    private const int GiveUpAfter = 10;
    private int _inARow;

    /// Steps computed again (with oneDNN off, or with it on when `keepOneDnnOn`), counting from `ContinueFrom`.
    public int Retried { get; private set; }

    /// A resumed task goes on counting from its checkpoint's figure (the ten-in-a-row count starts afresh).
    public void ContinueFrom(int retried) => Retried = retried;

    /// Runs `step` (returns its loss and gradient norm); when either is not finite and oneDNN is on, runs it
    /// again, with oneDNN off unless `keepOneDnnOn`. Returns the loss and whether the gradients may be applied.
    public (double Loss, bool Apply) Run(int stepNumber, Func<(double Loss, double GradNorm)> step, Action<string>? info)
    {
        var (loss, gradNorm) = step();
        if (!Finite(loss, gradNorm) && _oneDnnEnabled())
        {
            Retried++;
            if (keepOneDnnOn)
            {
                info?.Invoke($"{stage}: non-finite gradients at step {stepNumber} (oneDNN); computed the step again, oneDNN kept on (without it half precision is too slow on the CPU; {Retried} so far)");
                (loss, gradNorm) = step();
            }
            else
            {
                info?.Invoke($"{stage}: non-finite gradients at step {stepNumber} (oneDNN); computed the step again with oneDNN off ({Retried} so far)");
                using (_suspendOneDnn())
                    (loss, gradNorm) = step();
            }
        }
        if (Finite(loss, gradNorm))
        {
            _inARow = 0;
            return (loss, true);
        }
        if (++_inARow >= GiveUpAfter)
            throw new TrainingDivergedException($"{stage}: the loss or gradients stayed non-finite for {GiveUpAfter} steps (at step {stepNumber}, loss {loss}); " +
                (keepOneDnnOn ? "half precision on the CPU: train with --dtype fp32 (or try a lower --lr)" : "try a lower --lr"));
        return (loss, false);
    }

    private static bool Finite(double loss, double gradNorm) => double.IsFinite(loss) && double.IsFinite(gradNorm);
}
