using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Benchmarking;

/// One prompt's score: the fraction of its samples classified as a class the prompt accepts, the MMD² and KID
/// between the samples and real test images of those classes in the classifier's feature space, and a few samples
/// kept for the grid. `Predicted`: how many samples the classifier put in each class (what a failed concept is
/// drawn as instead).
public sealed record ConceptScore(double Accuracy, double Mmd, double Kid, Tensor GridSamples, IReadOnlyDictionary<int, int> Predicted) : IDisposable
{
    public void Dispose() => GridSamples.Dispose();

    /// The classes other than the accepted ones that take at least 10% of the samples, largest first, e.g.
    /// "drawn as coat 30%, shirt 12%"; empty when there are none.
    public string OtherClasses(IReadOnlyList<int> accepted)
    {
        int total = Predicted.Values.Sum();
        var others = Predicted.Where(kv => !accepted.Contains(kv.Key) && kv.Value * 10 >= total).OrderByDescending(kv => kv.Value)
            .Select(kv => $"{Data.FashionMnist.ClassNames[kv.Key]} {(double)kv.Value / total:P0}").ToList();
        return others.Count == 0 ? "" : "drawn as " + string.Join(", ", others);
    }
}

/// Samples a prompt with a model and scores it with the Fashion-MNIST classifier. Real-image features are computed
/// once per accepted class set and reused for every MMD² and KID.
public sealed class ConceptScorer(FashionClassifier classifier, FashionMnist.Split test, PromptClassAccuracy.Settings sampling,
    int realPerClass = 500) : IDisposable
{
    public const int GridSamplesPerCell = 4;
    private readonly Dictionary<string, Tensor> _realFeatures = [];

    public PromptClassAccuracy.Settings Sampling => sampling;

    /// Samples `target.Prompt` (seeded by the settings and the target's label) and scores it.
    public ConceptScore Score(StableDiffusion model, PromptTarget target, CancellationToken cancel = default)
    {
        double mmd = double.NaN, kid = double.NaN;
        Tensor? grid = null;
        var scores = PromptClassAccuracy.Measure(model, classifier, [target], sampling, (_, images) =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var features = classifier.Features(PromptClassAccuracy.ClassifierInput(images));
            var real = RealFeatures(target.AcceptedLabels);
            mmd = Evaluation.Mmd.Squared(features, real);
            kid = Evaluation.Kid.Compute(features, real);
            grid = images[..Math.Min(GridSamplesPerCell, (int)images.shape[0])].clone().DetachFromDisposeScope();
        }, cancel);
        return new ConceptScore(scores[0].Accuracy, mmd, kid, grid!, scores[0].Predicted);
    }

    /// Features of up to `realPerClass` test images of each accepted class.
    private Tensor RealFeatures(IReadOnlyList<int> labels)
    {
        string key = string.Join(",", labels);
        if (_realFeatures.TryGetValue(key, out var f)) return f;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var indices = labels.SelectMany(l => test.IndicesOf(l).Take(realPerClass)).ToArray();
        f = classifier.Features(FashionImages.ToTensor(test, indices)).DetachFromDisposeScope(); // cached: outlives every scope
        _realFeatures[key] = f;
        return f;
    }

    public void Dispose()
    {
        foreach (var t in _realFeatures.Values) t.Dispose();
        _realFeatures.Clear();
    }
}
