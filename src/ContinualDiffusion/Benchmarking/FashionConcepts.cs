using ContinualDiffusion.Runtime;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Imaging;
using TorchSharp;

namespace ContinualDiffusion.Benchmarking;

/// The benchmark's concepts (FashionProtocol's fine-grained setting): Fashion-MNIST classes of categories the base
/// model draws under a coarse caption, one per task. A concept's training images are a seeded random choice from
/// that class's train images that pretraining never used, written as PNG files into a folder — exactly what a user
/// would hand to `cdiff train --images`. Scoring compares against the TEST split, so the training images are never
/// the reference they are judged by.
public static class FashionConcepts
{
    /// Pullover, T-shirt, coat (three kinds of top, in sequence), sandal, ankle boot (two kinds of shoe): tasks 1..5.
    /// Chosen by measurement on validation images (seed 100, each concept trained alone with the shipped recipe, 40
    /// samples, guidance 7.5): pullover 62.5%, T-shirt 67.5%, coat 32.5%, sandal 45%, ankle boot 85%, while shirt
    /// (12.5%; the base model's VAE reconstructs only 37% of real shirts as shirts) and sneaker (5%; drawn as bags
    /// and boots) could not be learned from 20 images at all, so they could not show forgetting either.
    /// `cdiff benchmark --concepts` chooses another sequence.
    public static readonly IReadOnlyList<int> Labels = [2, 0, 4, 5, 9];

    public static string Name(int label) => FashionMnist.ClassNames[label];

    /// "<v3> = coat" for task 3 of the default sequence.
    public static string ConceptName(int task) => ConceptName(task, Labels);

    /// "<vt> = class" for task t of the sequence `labels`.
    public static string ConceptName(int task, IReadOnlyList<int> labels) => $"{Text.ConceptTokens.Name(task)} = {Name(labels[task - 1])}";

    /// `--concepts`: comma-separated Fashion-MNIST class names in task order ("pullover,t-shirt,coat"), matched
    /// ignoring case, spaces, '-' and '/' ("t-shirt", "T-shirt/top", "ankle boot", "ankle-boot"); each class once.
    public static IReadOnlyList<int> Parse(string list)
    {
        var labels = new List<int>();
        foreach (var raw in list.Split(',', StringSplitOptions.TrimEntries))
        {
            string key = Key(raw) == "tshirt" ? "tshirttop" : Key(raw);
            int label = Array.FindIndex(FashionMnist.ClassNames, n => Key(n) == key);
            if (raw.Length == 0 || label < 0)
                throw new InputException($"--concepts: '{raw}' is not a Fashion-MNIST class; expected names from {string.Join(", ", FashionMnist.ClassNames.Select(Key).Select(k => k == "tshirttop" ? "tshirt" : k))}, comma-separated, e.g. pullover,tshirt,coat,sandal,ankleboot");
            if (labels.Contains(label)) throw new InputException($"--concepts: '{raw}' is listed twice (each class is one concept)");
            labels.Add(label);
        }
        return labels;

        static string Key(string name) => new([.. name.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit)]);
    }

    /// The base model's own prompts, one per coarse group ("a photo of a top" accepts t-shirt, pullover, coat and
    /// shirt): scored before and after customization to measure the damage to what the model knew.
    public static IReadOnlyList<PromptTarget> BasePrompts(string template) =>
        [.. FashionProtocol.CoarseNames.Select(c => new PromptTarget(FashionProtocol.Representative(c), template.Replace("{}", c), FashionProtocol.Group(c)))];

    /// `count` train-split indices of `label` from its concept pool (never seen in pretraining), chosen by `seed`
    /// (the same seed always picks the same images).
    public static int[] ChooseImages(FashionMnist.Split train, int label, int count, long seed)
    {
        var pool = FashionProtocol.ConceptPool(train, label);
        if (pool.Length < count) throw new InputException($"--images-per-concept: {count} exceeds the {pool.Length} train images of '{Name(label)}' kept out of pretraining");
        var rng = new Random(unchecked((int)(seed * 1_000_003 + label)));
        rng.Shuffle(pool);
        return pool[..count];
    }

    /// Writes the chosen images as 32×32 RGB PNGs (padded as the base model was trained) into `dir`; returns `dir`.
    public static string WriteFolder(FashionMnist.Split train, int label, int count, long seed, string dir)
    {
        Directory.CreateDirectory(dir);
        var indices = ChooseImages(train, label, count, seed);
        using var scope = torch.NewDisposeScope();
        var images = FashionImages.ToTensor(train, indices, channels: 3).Plus(1).DividedBy(2).permute(0, 2, 3, 1);
        for (int k = 0; k < indices.Length; k++)
            PngFile.Save(images[k], Path.Combine(dir, $"{Name(label).Replace(' ', '-').Replace('/', '-')}-{indices[k]:D5}.png"));
        return dir;
    }
}
