using ContinualDiffusion.Runtime;
using TorchSharp;

namespace ContinualDiffusion.Tests.Training;

public class GradientCheckpointingTests
{
    /// Recomputing the UNet blocks in backward must not change the step: same loss, same gradients (LoRA factors,
    /// which sit inside the checkpointed blocks, and the token row, which reaches them through the text states).
    /// Measured (2026-12-07): the same loss, gradients 3.0e-7 apart (relative L2; the recomputation's backward sums in
    /// another order); asserted at 1e-5.
    [Fact]
    public void Checkpointing_gives_the_gradient_of_a_plain_backward()
    {
        using var scope = torch.NewDisposeScope();
        var (plainLoss, plain) = OneStepGradient.Compute(ComputePrecision.Float32);
        int before = ActivationCheckpoint.BackwardCallsOnThisThread;
        var (loss, checkpointed) = OneStepGradient.Compute(ComputePrecision.Float32, checkpointing: true);
        Assert.Equal(7, ActivationCheckpoint.BackwardCallsOnThisThread - before); // 3 down, 1 mid and 3 up blocks recomputed
        Assert.Equal(plainLoss, loss, 6);
        var error = checkpointed.sub(plain).norm().item<float>() / plain.norm().item<float>();
        Assert.True(error <= 1e-5, $"relative gradient difference {error:E2}");
    }
}
