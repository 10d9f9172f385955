using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// Sequential fine-tuning of the whole backbone and the head, task after task, with nothing to hold the past: the
/// lower bound of the comparison. Run on one task holding every class it is `joint`, the upper bound (not
/// continual).
public sealed class FinetuneLearner : ClassIncrementalLearner
{
    private readonly bool _joint;

    public FinetuneLearner(VisionTransformer backbone, ClassifyOptions options, bool joint = false) : base(backbone, options)
    {
        _joint = joint;
        foreach (var p in backbone.parameters()) p.requires_grad = true;
    }

    public override string Method => _joint ? "joint" : "finetune";

    public override IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups()
    {
        // The pretraining head is not part of the continual model.
        yield return ("backbone", [.. Backbone.named_parameters().Where(p => !p.name.StartsWith("head.", StringComparison.Ordinal)).Select(p => p.parameter)], Options.LearningRate);
        yield return ("head", [Head.Weight, Head.Bias], Options.HeadLearningRate);
    }

    protected override (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images) => (Backbone.Features(images), null);

    public override Tensor Predict(Tensor images)
    {
        using var features = Backbone.Features(images);
        return Head.call(features);
    }

    public override Dictionary<string, Tensor> State()
    {
        var state = base.State();
        foreach (var (name, p) in Backbone.named_parameters())
            if (!name.StartsWith("head.", StringComparison.Ordinal)) state[$"backbone.{name}"] = Copy(p);
        return state;
    }

    protected override void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in Backbone.named_parameters())
        {
            if (name.StartsWith("head.", StringComparison.Ordinal)) continue;
            var saved = Required(state, $"backbone.{name}");
            if (!saved.shape.SequenceEqual(p.shape))
                throw new InputException($"'backbone.{name}' is [{string.Join(", ", saved.shape)}], the model's is [{string.Join(", ", p.shape)}]");
            p.copy_(saved.to(p.dtype, p.device));
        }
    }
}
