using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Tests.Benchmarking;

/// The report's "training options" row: absent for the defaults every reported figure used, else each option set.
public class ReportTrainingOptionsTests
{
    [Fact]
    public void Defaults_add_no_row_and_each_option_set_is_named()
    {
        Assert.Equal("", BenchmarkRunner.TrainingOptions(new TrainingConfig().Validated("test")));
        var c = new TrainingConfig
        {
            BatchSize = 2, GradientAccumulationSteps = 4, LrScheduler = "cosine", LrWarmupSteps = 40, SnrGamma = 5, NoiseOffset = 0.05,
            AspectBuckets = true,
        }.Validated("test");
        Assert.Equal("batch size 2; 4 accumulated batches per step; cosine schedule, 40 warm-up steps; Min-SNR γ 5; noise offset 0.05; aspect buckets (step 64)",
            BenchmarkRunner.TrainingOptions(c));
    }
}
