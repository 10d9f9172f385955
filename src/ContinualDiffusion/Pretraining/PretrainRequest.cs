namespace ContinualDiffusion.Pretraining;

/// Everything `cdiff pretrain` needs. The defaults are the Fashion-MNIST base model of the demo: measured to
/// train in 6–8 minutes on 2 CPU cores (see README) while its class prompts still draw recognisable garments.
public sealed record PretrainRequest
{
    /// The five Fashion-MNIST classes the base model knows; the other five become C-LoRA concepts later.
    public static readonly int[] DefaultClasses = [0, 1, 3, 5, 8];

    public required string OutDir { get; init; }

    /// Captioned images from a folder with metadata.jsonl; when null, Fashion-MNIST classes are used.
    public string? ImagesDir { get; init; }
    public string FashionMnistDir { get; init; } = Data.FashionMnist.DefaultFolder;
    public IReadOnlyList<int> Classes { get; init; } = DefaultClasses;

    /// At most this many training images (Fashion-MNIST: split evenly over the classes). Encoding and the
    /// fingerprint scale with it; a few thousand images are plenty for the few thousand steps a CPU can afford.
    public int MaxImages { get; init; } = 3000;

    public string Architecture { get; init; } = PretrainArchitecture.DefaultName;
    public int Resolution { get; init; } = 32;
    // Defaults measured on 2 cores (see README): 6–8 min in all; VAE 200 steps of 64 images ≈ 1.5 min, UNet 600
    // steps of 128 ≈ 4.5–6.5 min (1.6–2.3 it/s with oneDNN, depending on the shared machine's load). 600 rather than 800 UNet steps so the demo stays under 15 minutes when
    // this shared machine runs 30% slow (as it did for one full demo run). The UNet gains from the larger batch
    // (≈ 1.6× images/s over 32), the VAE does not, so each stage has its own batch size.
    public int VaeSteps { get; init; } = 200;
    public int UnetSteps { get; init; } = 600;
    public int VaeBatchSize { get; init; } = 64;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 1e-3;
    public long Seed { get; init; }
    public bool Force { get; init; }

    /// Checks option values, naming the option; throws InputException (exit 2).
    public PretrainRequest Validated()
    {
        static void Positive(string option, double value)
        {
            if (!(value > 0)) throw new InputException($"{option} must be positive, got {value}");
        }
        Positive("--vae-steps", VaeSteps);
        Positive("--unet-steps", UnetSteps);
        Positive("--batch-size", BatchSize);
        Positive("--vae-batch-size", VaeBatchSize);
        Positive("--lr", LearningRate);
        Positive("--max-images", MaxImages);
        Positive("--resolution", Resolution);
        if (Resolution % 8 != 0) throw new InputException($"--resolution must be a multiple of 8, got {Resolution}");
        if (ImagesDir is null)
        {
            if (Classes.Count == 0) throw new InputException("--classes: give at least one Fashion-MNIST class (0-9)");
            foreach (var c in Classes)
                if (c is < 0 or > 9) throw new InputException($"--classes: unknown Fashion-MNIST class {c} (expected 0-9: {string.Join(", ", Data.FashionMnist.ClassNames.Select((n, i) => $"{i} {n}"))})");
            if (Classes.Distinct().Count() != Classes.Count) throw new InputException($"--classes: class listed twice in {string.Join(",", Classes)}");
        }
        return this;
    }
}
