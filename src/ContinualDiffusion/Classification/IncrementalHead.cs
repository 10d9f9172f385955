using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// The class-incremental classifier head: one output per class seen so far, in the order the classes arrived
/// (column j is the j-th class learned). Each task appends rows for its new classes (N(0, 0.02)-initialised weights,
/// zero bias) and keeps the earlier rows' values. Saved as `head.weight` [classes, dim] and `head.bias` [classes] by the
/// learner's State. The two tensors are replaced when the head grows, so they are not registered with TorchSharp (which
/// cannot re-register a parameter): the head owns and disposes them itself, and the learner hands them to the optimiser.
public sealed class IncrementalHead : nn.Module<Tensor, Tensor>
{
    private Parameter weight;
    private Parameter bias;
    private readonly long _dim;

    public IncrementalHead(long dim) : base(nameof(IncrementalHead))
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim));
        _dim = dim;
        weight = Owned(new Parameter(torch.zeros(0, dim)));
        bias = Owned(new Parameter(torch.zeros(0)));
    }

    public int Classes => (int)weight.shape[0];
    public Parameter Weight => weight;
    public Parameter Bias => bias;

    /// Appends `count` outputs.
    public void Grow(int count, Generator? generator = null)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), "a task adds at least one class");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var fresh = torch.randn([count, _dim], generator: generator).Times(0.02).to(weight.dtype, weight.device);
        Replace(torch.cat([weight.detach(), fresh], 0), torch.cat([bias.detach(), torch.zeros(count, dtype: bias.dtype, device: bias.device)], 0));
    }

    /// Sets the head's values (a checkpoint's), resizing it to their class count.
    public void Load(Tensor newWeight, Tensor newBias)
    {
        if (newWeight.dim() != 2 || newWeight.shape[1] != _dim || newBias.dim() != 1 || newBias.shape[0] != newWeight.shape[0])
            throw new ArgumentException($"head must be [classes, {_dim}] and [classes], got [{string.Join(", ", newWeight.shape)}] and [{string.Join(", ", newBias.shape)}]");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        Replace(newWeight.detach().to(weight.dtype, weight.device).clone(), newBias.detach().to(bias.dtype, bias.device).clone());
    }

    private void Replace(Tensor w, Tensor b)
    {
        var (oldW, oldB) = (weight, bias);
        weight = Owned(new Parameter(w, requires_grad: true));
        bias = Owned(new Parameter(b, requires_grad: true));
        oldW.Dispose();
        oldB.Dispose();
    }

    /// features [B, dim] → logits [B, classes].
    public override Tensor forward(Tensor features) => nn.functional.linear(features, weight, bias);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            weight.Dispose();
            bias.Dispose();
        }
        base.Dispose(disposing);
    }

    private static T Owned<T>(T tensor) where T : Tensor
    {
        tensor.DetachFromDisposeScope();
        return tensor;
    }
}
