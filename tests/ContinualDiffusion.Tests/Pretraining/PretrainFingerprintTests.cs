using ContinualDiffusion.Pretraining;
using ContinualDiffusion.Tests.Support;

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

public class ShippedBaseModelTests
{
    /// models/fashion-base is what `cdiff pretrain --out models/fashion-base` trains with today's defaults: its recorded
    /// fingerprint is the defaults' fingerprint (with the data identity it recorded), so the command reuses the folder
    /// instead of retraining, and changing a default without re-shipping the model fails here.
    [Fact]
    public void The_shipped_base_model_was_trained_with_the_default_pretrain_request()
    {
        var folder = Path.Combine(Fixture.Root, "models", "fashion-base");
        var record = PretrainRecord.TryRead(folder) ?? throw new InvalidOperationException($"{folder}: no {PretrainRecord.FileName}");
        string dataIdentity = record.Request["data_sha256"]!.GetValue<string>();
        var canonical = PretrainFingerprint.Canonical(new PretrainRequest { OutDir = folder }, PretrainArchitecture.Load(PretrainArchitecture.DefaultName), dataIdentity);
        Assert.Equal(record.Request.ToJsonString(), canonical.ToJsonString());
        Assert.Equal(record.Fingerprint, PretrainFingerprint.Compute(canonical));
    }
}
