using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Runtime;

/// Gradient checkpointing (`--gradient-checkpointing`): a block runs forward without keeping its activations, and
/// backward recomputes them from the block's saved inputs, then differentiates the recomputation. Memory falls from
/// every block's activations to one block's at a time plus the blocks' inputs; the cost is a second forward.
///
/// The trainable parameters the block uses are passed in as inputs too, so their gradients flow through this node
/// (`torch.autograd.grad` inside backward, returned to the engine) even when no activation input requires a gradient,
/// as for the UNet's first block, whose input is the noisy latent. This is PyTorch's reentrant checkpoint
/// (torch.utils.checkpoint, use_reentrant=True) with its known gap, parameters reached only inside the block, closed
/// that way. The block must be deterministic (no dropout, no random draws), which the UNet's blocks are.
///
/// Ownership: the saved inputs, the incoming gradients and the recomputation are disposed when backward returns. The
/// gradients handed to libtorch must outlive the return (libtorch takes its own reference right after), so they wait
/// in a per-thread list, released when that thread's next backward starts and by <see cref="ReleaseHandedOver"/> after
/// the whole backward pass (TaskTrainer calls it): nothing is left to the finalizer and nothing is kept longer than one
/// block's backward. TorchSharp itself keeps an empty tensor per output for the node's lifetime (its `WrapOutputs`).
public sealed class ActivationCheckpoint : autograd.MultiTensorFunction<ActivationCheckpoint>
{
    private const string BlockKey = "block";
    private const string CountKey = "inputs";

    [ThreadStatic] private static List<Tensor>? _handedOver;
    [ThreadStatic] private static int _backwardCalls;

    /// Backward passes of checkpointed blocks run on this thread so far (the tests check that checkpointing happened).
    public static int BackwardCallsOnThisThread => _backwardCalls;

    /// Disposes the gradients this thread handed to libtorch (call after `backward()` returns).
    public static void ReleaseHandedOver()
    {
        if (_handedOver is null) return;
        foreach (var g in _handedOver) g.Dispose();
        _handedOver.Clear();
    }

    public override string Name => nameof(ActivationCheckpoint);

    /// `block`'s outputs for `inputs` (activations, then the trainable parameters the block reads; the block itself
    /// receives only the first `activations` of them), recomputed in backward instead of kept.
    public static Tensor[] Run(Func<Tensor[], Tensor[]> block, Tensor[] inputs, int activations)
    {
        if (!torch.is_grad_enabled()) return block(inputs[..activations]);
        object[] vars = [block, activations, .. inputs];
        return [.. apply(vars)];
    }

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var block = (Func<Tensor[], Tensor[]>)vars[0];
        int activations = (int)vars[1];
        var inputs = vars.Skip(2).Cast<Tensor>().ToList();
        ctx.save_for_backward(inputs);
        ctx.save_data(BlockKey, block);
        ctx.save_data(CountKey, activations);
        // An output nothing downstream used arrives in backward as an undefined gradient, left out below. (Materialising
        // zeros would read TorchSharp's cached output shapes, which the caller's dispose scope has released by then.)
        ctx.set_materialize_grads(false);
        return [.. block([.. inputs.Take(activations)])]; // autograd is off here: nothing inside is kept
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
    {
        ReleaseHandedOver(); // the previous block's gradients: libtorch holds its own references by now
        _backwardCalls++;
        var block = (Func<Tensor[], Tensor[]>)ctx.get_data(BlockKey);
        int activations = (int)ctx.get_data(CountKey);
        var saved = ctx.get_saved_variables();
        var grads = new Tensor?[saved.Count];
        try
        {
            using var scope = torch.NewDisposeScope();
            using var enable = torch.enable_grad();
            // Activations re-enter as fresh leaves; the parameters are the module's own tensors (already leaves).
            var replay = saved.Select((s, i) => i < activations ? s.detach().requires_grad_(s.requires_grad) : s).ToArray();
            var outputs = block(replay[..activations]);
            var wanted = Enumerable.Range(0, replay.Length).Where(i => replay[i].requires_grad).ToList();
            var live = Enumerable.Range(0, outputs.Length).Where(i => outputs[i].requires_grad && gradOutputs[i] is { IsInvalid: false }).ToList();
            if (wanted.Count > 0 && live.Count > 0)
            {
                var result = torch.autograd.grad([.. live.Select(i => outputs[i])], [.. wanted.Select(i => replay[i])],
                    [.. live.Select(i => gradOutputs[i])], allow_unused: true);
                for (int k = 0; k < wanted.Count; k++)
                    if (result[k] is { IsInvalid: false } g) grads[wanted[k]] = g.DetachFromDisposeScope();
            }
        }
        finally
        {
            foreach (var s in saved) s.Dispose(); // the unpacked wrappers; the saved tensors stay with the node
            foreach (var g in gradOutputs) g?.Dispose(); // TorchSharp's wrappers of the incoming gradients
        }
        (_handedOver ??= []).AddRange(grads.Where(g => g is not null)!);
        return [null!, null!, .. grads.Select(g => g!)];
    }
}
