using ContinualDiffusion.Pretraining;

namespace ContinualDiffusion.Tests.Pretraining;

public class PretrainFingerprintTests
{
    private static string Fingerprint(PretrainRequest r) =>
        PretrainFingerprint.Compute(PretrainFingerprint.Canonical(r, PretrainArchitecture.Load("tiny"), "data-identity"));

    private static readonly PretrainRequest Base = new() { OutDir = "/tmp/unused" };

    [Fact]
    public void Every_option_that_changes_the_weights_changes_the_fingerprint()
    {
        var variants = new[]
        {
            Base with { VaeSteps = Base.VaeSteps + 1 },
            Base with { UnetSteps = Base.UnetSteps + 1 },
            Base with { BatchSize = Base.BatchSize + 1 },
            Base with { VaeBatchSize = Base.VaeBatchSize + 1 },
            Base with { LearningRate = Base.LearningRate * 2 },
            Base with { Seed = Base.Seed + 1 },
            Base with { MaxImages = Base.MaxImages + 1 },
            Base with { Classes = [0, 1] },
        };
        var all = variants.Select(Fingerprint).Append(Fingerprint(Base)).ToList();
        Assert.Equal(all.Count, all.Distinct().Count());
    }

    [Fact]
    public void Output_folder_and_force_do_not_change_it()
    {
        Assert.Equal(Fingerprint(Base), Fingerprint(Base with { OutDir = "/elsewhere", Force = true }));
    }
}
