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
/// Ownership: the saved inputs and the recomputation live in dispose scopes of backward; the gradients returned to
/// libtorch are moved to the caller's scope (the training step's), so they outlive the hand-over.
public sealed class ActivationCheckpoint : autograd.MultiTensorFunction<ActivationCheckpoint>
{
    private const string BlockKey = "block";
    private const string CountKey = "inputs";

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
                    if (result[k] is { IsInvalid: false } g) grads[wanted[k]] = g.MoveToOuterDisposeScope();
            }
        }
        finally
        {
            foreach (var s in saved) s.Dispose(); // the unpacked wrappers; the saved tensors stay with the node
        }
        return [null!, null!, .. grads.Select(g => g!)];
    }
}
