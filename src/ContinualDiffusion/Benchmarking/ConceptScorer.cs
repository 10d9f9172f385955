using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarking;

/// One prompt's score: the fraction of its samples classified as the intended class, the MMD² between the samples
/// and real test images of that class in the classifier's feature space, and a few samples kept for the grid.
public sealed record ConceptScore(double Accuracy, double Mmd, Tensor GridSamples) : IDisposable
{
    public void Dispose() => GridSamples.Dispose();
}

/// Samples a prompt with a model and scores it with the Fashion-MNIST classifier. Real-image features are computed
/// once per class and reused for every MMD.
public sealed class ConceptScorer(FashionClassifier classifier, FashionMnist.Split test, PromptClassAccuracy.Settings sampling,
    int realPerClass = 500) : IDisposable
{
    public const int GridSamplesPerCell = 4;
    private readonly Dictionary<int, Tensor> _realFeatures = [];

    public PromptClassAccuracy.Settings Sampling => sampling;

    /// Samples `prompt` (seeded by the settings and `label`) and scores it as class `label`.
    public ConceptScore Score(StableDiffusion model, int label, string prompt, CancellationToken cancel = default)
    {
        double mmd = double.NaN;
        Tensor? grid = null;
        var scores = PromptClassAccuracy.Measure(model, classifier, [(label, prompt)], sampling, (_, images) =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var features = classifier.Features(PromptClassAccuracy.ClassifierInput(images));
            mmd = Evaluation.Mmd.Squared(features, RealFeatures(label));
            grid = images[..Math.Min(GridSamplesPerCell, (int)images.shape[0])].clone().DetachFromDisposeScope();
        }, cancel);
        return new ConceptScore(scores[0].Accuracy, mmd, grid!);
    }

    private Tensor RealFeatures(int label)
    {
        if (_realFeatures.TryGetValue(label, out var f)) return f;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var indices = test.IndicesOf(label).Take(realPerClass).ToArray();
        f = classifier.Features(FashionImages.ToTensor(test, indices)).DetachFromDisposeScope(); // cached: outlives every scope
        _realFeatures[label] = f;
        return f;
    }

    public void Dispose()
    {
        foreach (var t in _realFeatures.Values) t.Dispose();
        _realFeatures.Clear();
    }
}
