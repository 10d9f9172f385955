using ContinualDiffusion.Classification;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using TorchSharp;

namespace ContinualDiffusion.Tests.Classification;

/// Small ViTs and image sets for the classification tests.
internal static class ClassifyTestData
{
    public static readonly VitConfig Tiny = new() { ImageSize = 28, PatchSize = 7, EmbedDim = 16, Depth = 2, NumHeads = 2, MlpDim = 32 };

    /// A tiny ViT whose every weight is drawn from its own generator: the same seed gives the same weights even while
    /// other tests use torch's global generator (the layers' default initialisers draw from it) on other threads.
    public static VisionTransformer TinyVit(int classes = 10, ulong seed = 1)
    {
        using var g = new torch.Generator(seed);
        var vit = VisionTransformer.Create(Tiny, classes, g);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in vit.named_parameters())
        {
            var values = name.EndsWith("norm1.weight") || name.EndsWith("norm2.weight") || name == "norm.weight"
                ? torch.ones(p.shape)
                : torch.randn(p.shape, generator: g).Times(0.1);
            p.copy_(values);
        }
        return vit;
    }

    private static readonly Lazy<LabeledImages> FashionTrain = new(() => LabeledImages.FromFashion(FashionMnist.LoadTrain()));
    private static readonly Lazy<LabeledImages> FashionTest = new(() => LabeledImages.FromFashion(FashionMnist.LoadTest()));

    /// The learner tests' two tasks: trouser and bag, then sandal and pullover (24 train images each).
    public static LabeledImages Task1 => Fashion([1, 8], 24);
    public static LabeledImages Task2 => Fashion([5, 2], 24);

    /// The first `perClass` Fashion-MNIST train (or test) images of each class in `classes`.
    public static LabeledImages Fashion(int[] classes, int perClass, bool test = false)
    {
        var set = test ? FashionTest.Value : FashionTrain.Value;
        var indices = classes.SelectMany(c => Enumerable.Range(0, set.Count).Where(i => set.Labels[i] == c).Take(perClass)).ToArray();
        return set.Select(indices);
    }
}
