using ContinualDiffusion.Pretraining;
using ContinualDiffusion.Training;
using Xunit;

namespace ContinualDiffusion.Tests.Training;

/// The guard around oneDNN's sporadic NaN gradients. The real process-wide oneDNN switch is never flipped here
/// (tests run in parallel and flipping it mid-convolution crashed the test host), so the switch is faked.
public class NonFiniteStepGuardTests
{
    private sealed class FakeOneDnn
    {
        public bool On = true;
        public int Suspensions;
        public bool Enabled() => On;
        public IDisposable Suspend()
        {
            Suspensions++;
            bool was = On;
            On = false;
            return new Restore(() => On = was);
        }
        private sealed class Restore(Action a) : IDisposable { public void Dispose() => a(); }
    }

    [Fact]
    public void Finite_step_is_applied_without_a_retry()
    {
        var dnn = new FakeOneDnn();
        var guard = new NonFiniteStepGuard("unet", dnn.Enabled, dnn.Suspend);
        int calls = 0;
        var (loss, apply) = guard.Run(1, () => { calls++; return (0.5, 1.0); }, null);
        Assert.True(apply);
        Assert.Equal(0.5, loss);
        Assert.Equal(1, calls);
        Assert.Equal(0, guard.Retried);
    }

    [Fact]
    public void Nan_with_oneDNN_on_is_recomputed_with_oneDNN_off_and_then_switched_back_on()
    {
        var dnn = new FakeOneDnn();
        var guard = new NonFiniteStepGuard("unet", dnn.Enabled, dnn.Suspend);
        var seenOneDnn = new List<bool>();
        var messages = new List<string>();
        var (loss, apply) = guard.Run(7, () =>
        {
            seenOneDnn.Add(dnn.On);
            return dnn.On ? (0.9, double.NaN) : (0.8, 2.0);
        }, messages.Add);
        Assert.True(apply);
        Assert.Equal(0.8, loss);
        Assert.Equal([true, false], seenOneDnn);
        Assert.True(dnn.On); // restored for the next step: the NaNs are transient
        Assert.Equal(1, guard.Retried);
        Assert.Contains("step 7", Assert.Single(messages));
    }

    [Fact]
    public void Nan_on_the_retry_too_is_skipped_counted_and_oneDNN_comes_back_on()
    {
        var dnn = new FakeOneDnn();
        var guard = new NonFiniteStepGuard("unet", dnn.Enabled, dnn.Suspend);
        for (int step = 1; step < 10; step++)
            Assert.False(guard.Run(step, () => (double.NaN, 1.0), null).Apply);
        Assert.True(dnn.On);
        Assert.Equal(9, guard.Retried);
        Assert.Throws<TrainingDivergedException>(() => guard.Run(10, () => (1.0, double.NaN), null));
    }

    [Fact]
    public void In_half_precision_on_the_CPU_the_retry_keeps_oneDNN_on()
    {
        var dnn = new FakeOneDnn();
        var guard = new NonFiniteStepGuard("task 1", dnn.Enabled, dnn.Suspend, keepOneDnnOn: true);
        int calls = 0;
        var messages = new List<string>();
        var (loss, apply) = guard.Run(4, () => ++calls == 1 ? (0.9, double.NaN) : (0.8, 2.0), messages.Add);
        Assert.True(apply);
        Assert.Equal(0.8, loss);
        Assert.Equal(2, calls);
        Assert.Equal(0, dnn.Suspensions);
        Assert.Equal(1, guard.Retried);
        Assert.Contains("step 4 (oneDNN); computed the step again, oneDNN kept on", Assert.Single(messages));
        Assert.False(guard.Run(5, () => (0.9, double.NaN), null).Apply); // non-finite twice: not applied
        Assert.Equal(0, dnn.Suspensions);
    }

    [Fact]
    public void A_retry_that_throws_still_switches_oneDNN_back_on()
    {
        var dnn = new FakeOneDnn();
        var guard = new NonFiniteStepGuard("unet", dnn.Enabled, dnn.Suspend);
        Assert.Throws<OperationCanceledException>(() => guard.Run(3, () =>
            dnn.On ? (double.NaN, double.NaN) : throw new OperationCanceledException(), null));
        Assert.True(dnn.On);
    }

    [Fact]
    public void Nan_without_oneDNN_is_skipped_and_ten_in_a_row_stop_training()
    {
        var dnn = new FakeOneDnn { On = false };
        var guard = new NonFiniteStepGuard("vae", dnn.Enabled, dnn.Suspend);
        for (int step = 1; step < 10; step++)
            Assert.False(guard.Run(step, () => (double.NaN, double.NaN), null).Apply);
        Assert.Equal(0, dnn.Suspensions); // nothing to switch off
        var e = Assert.Throws<TrainingDivergedException>(() => guard.Run(10, () => (double.PositiveInfinity, 1.0), null));
        Assert.Contains("vae", e.Message);
        Assert.Contains("--lr", e.Message);
    }

    [Fact]
    public void A_finite_step_resets_the_divergence_count()
    {
        var dnn = new FakeOneDnn { On = false };
        var guard = new NonFiniteStepGuard("unet", dnn.Enabled, dnn.Suspend);
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 9; i++) Assert.False(guard.Run(i, () => (double.NaN, 1.0), null).Apply);
            Assert.True(guard.Run(9, () => (0.1, 1.0), null).Apply);
        }
    }
}
