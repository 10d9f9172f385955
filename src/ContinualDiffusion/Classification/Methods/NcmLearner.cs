using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// Nearest class mean on the frozen pretrained backbone: nothing trains; at the end of each task the mean feature
/// of each new class over its training images is stored (statistics, not images: still rehearsal-free), and an
/// image is assigned the class whose mean has the highest cosine similarity to its feature (the prototype
/// classifier of SimpleCIL / RanPAC-style baselines, Zhou et al. 2023, McDonnell et al. 2023). Logits are those
/// cosine similarities.
public sealed class NcmLearner : ClassIncrementalLearner
{
    private Tensor _means; // [classes, dim], L2-normalised

    public NcmLearner(VisionTransformer backbone, ClassifyOptions options) : base(backbone, options)
    {
        foreach (var p in backbone.parameters()) p.requires_grad = false;
        _means = torch.zeros(0, backbone.Config.EmbedDim).DetachFromDisposeScope();
    }

    public override string Method => "ncm";

    public override bool Trains => false;

    public override IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups() => [];

    protected override (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images) =>
        throw new InvalidOperationException("ncm does not train");

    public override Tensor Predict(Tensor images)
    {
        if (_means.shape[0] != Classes.Count) throw new InvalidOperationException("ncm predicts after a task has ended (its class means are made then)");
        using var scope = torch.NewDisposeScope();
        var features = nn.functional.normalize(Backbone.Features(images), dim: 1);
        return features.matmul(_means.t()).MoveToOuterDisposeScope();
    }

    public override void EndTask(Func<IEnumerable<(Tensor Images, Tensor Columns)>> taskTrain)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int offset = CurrentOffset, n = TaskSizes[^1];
        long dim = Backbone.Config.EmbedDim;
        var sums = torch.zeros(n, dim);
        var counts = torch.zeros(n);
        foreach (var (images, columns) in taskTrain())
        {
            var features = Backbone.Features(images).cpu();
            var local = columns.cpu().Minus(offset).to(ScalarType.Int64);
            var onehot = nn.functional.one_hot(local, n).to(ScalarType.Float32); // [B, n]
            sums = sums.Plus(onehot.t().matmul(features));
            counts = counts.Plus(onehot.sum(0));
        }
        if (counts.min().item<float>() < 1) throw new InputException("a class of this task has no training image");
        var means = nn.functional.normalize(sums.div(counts.unsqueeze(1)), dim: 1);
        var all = torch.cat([_means, means], 0);
        all.DetachFromDisposeScope();
        _means.Dispose();
        _means = all;
    }

    public override Dictionary<string, Tensor> State()
    {
        var state = base.State();
        state["ncm.means"] = _means.clone();
        return state;
    }

    protected override void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var scope = torch.NewDisposeScope();
        var means = Required(state, "ncm.means");
        if (means.dim() != 2 || means.shape[0] != Classes.Count || means.shape[1] != Backbone.Config.EmbedDim)
            throw new InputException($"'ncm.means' is [{string.Join(", ", means.shape)}], expected [{Classes.Count}, {Backbone.Config.EmbedDim}]");
        var kept = means.to(ScalarType.Float32).clone();
        kept.DetachFromDisposeScope();
        _means.Dispose();
        _means = kept;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _means.Dispose();
        base.Dispose(disposing);
    }
}
