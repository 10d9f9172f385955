using ContinualDiffusion.Data;
using ContinualDiffusion.Imaging;
using TorchSharp;

namespace ContinualDiffusion.Benchmarking;

/// The benchmark's concepts: Fashion-MNIST classes the base model never saw, one per task. A concept's training
/// images are a seeded random choice of that class's TRAIN images, written as PNG files into a folder — exactly
/// what a user would hand to `cdiff train --images`. Scoring compares against the TEST split, so the training
/// images are never the reference they are judged by.
public static class FashionConcepts
{
    /// Pullover, coat, shirt, sneaker, ankle boot: tasks 1..5 in this order.
    public static readonly IReadOnlyList<int> HeldOutLabels = [2, 4, 6, 7, 9];

    /// The classes the base model is pretrained on: everything not held out.
    public static IReadOnlyList<int> BaseLabels => [.. Enumerable.Range(0, FashionMnist.ClassNames.Length).Except(HeldOutLabels)];

    public static string Name(int label) => FashionMnist.ClassNames[label];

    /// The class words of the base model's captions ("a photo of a t-shirt"), so base-class prompts ask for what
    /// `cdiff pretrain` taught the base model.
    public static IReadOnlyList<string> PromptNames => Pretraining.CaptionedImages.FashionPromptNames;

    /// "<v2> = coat" for task 2.
    public static string ConceptName(int task) => $"{Text.ConceptTokens.Name(task)} = {Name(HeldOutLabels[task - 1])}";

    /// `count` train-split indices of `label`, chosen by `seed` (the same seed always picks the same images).
    public static int[] ChooseImages(FashionMnist.Split train, int label, int count, long seed)
    {
        var pool = train.IndicesOf(label).ToArray();
        if (pool.Length < count) throw new InputException($"--images-per-concept: {count} exceeds the {pool.Length} train images of '{Name(label)}'");
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
        var images = ((FashionImages.ToTensor(train, indices, channels: 3) + 1) / 2).permute(0, 2, 3, 1);
        for (int k = 0; k < indices.Length; k++)
            PngFile.Save(images[k], Path.Combine(dir, $"{Name(label).Replace(' ', '-').Replace('/', '-')}-{indices[k]:D5}.png"));
        return dir;
    }
}
