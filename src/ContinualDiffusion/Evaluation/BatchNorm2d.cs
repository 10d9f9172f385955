using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Evaluation;

/// torch.nn.BatchNorm2d (affine, running statistics, momentum 0.1) for the scoring classifier. Written out because
/// TorchSharp's own counts batches with `num_batches_tracked.add_(1)`, an implicit Scalar that a collection can
/// free while libtorch reads it (Runtime/TensorOwnership; under GC stress classifier training died of it within
/// seconds). Same state-dict keys (weight, bias, running_mean, running_var, num_batches_tracked) and the same
/// arithmetic as TorchSharp's BatchNorm.forward: functional.batch_norm with the batch statistics in training, the
/// running ones in evaluation.
public sealed class BatchNorm2d : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor running_mean;
    private readonly Tensor running_var;
    private readonly Tensor num_batches_tracked;
    private readonly double _eps;
    private readonly double _momentum;

    public BatchNorm2d(long features, double eps = 1e-5, double momentum = 0.1) : base(nameof(BatchNorm2d))
    {
        _eps = eps;
        _momentum = momentum;
        weight = new Parameter(torch.ones(features));
        bias = new Parameter(torch.zeros(features));
        running_mean = torch.zeros(features);
        running_var = torch.ones(features);
        num_batches_tracked = torch.zeros(Array.Empty<long>(), ScalarType.Int64);
        RegisterComponents();
    }

    /// Input (N, C, H, W).
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != 4) throw new ArgumentException($"expected a 4-D input (N, C, H, W), got shape [{string.Join(", ", input.shape)}]", nameof(input));
        if (training) num_batches_tracked.AddInPlace(1L);
        return nn.functional.batch_norm(input, running_mean, running_var, weight, bias, training, _momentum, _eps);
    }
}
