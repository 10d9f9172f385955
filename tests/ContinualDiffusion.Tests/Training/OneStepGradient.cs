using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// One C-LoRA training step on the sd-tiny fixture with fixed inputs and initial factors: the loss (diffusion MSE plus
/// the penalty) and the gradient of every LoRA factor and of the new token's row, concatenated.
internal static class OneStepGradient
{
    public static (double Loss, Tensor Gradient) Compute(ComputePrecision precision, bool checkpointing = false)
    {
        using var m = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny), precision: precision);
        m.Freeze();
        m.Unet.GradientCheckpointing = checkpointing;
        using var g = new Generator(11);
        var layers = LoraInjector.Inject(m.CrossAttentionKeyValueTargets(), 2, null, g);
        using (torch.no_grad()) // a non-zero up factor, so both factors get a gradient
            foreach (var l in layers) l.LoraA.copy_(torch.randn(l.LoraA.shape, generator: g).Times(0.05));
        long id = m.Tokenizer.AddConceptToken("<v1>");
        var token = new TorchSharp.Modules.Parameter(torch.randn([1, m.TextEncoder.HiddenSize], generator: g).Times(0.02), requires_grad: true);
        using var ids = m.Tokenize(["a photo of <v1>"]);
        using var text = m.TextEncoder.Encode(ids, new Dictionary<long, Tensor> { [id] = token });
        var sample = Fixture.Ref("unet.sample").narrow(0, 0, 1);
        var pred = m.Unet.forward(sample, torch.tensor(500L), text.LastHiddenState);
        Assert.Equal(ScalarType.Float32, pred.dtype); // float32 latents in, float32 out
        var target = torch.randn(pred.shape, generator: g);
        var loss = nn.functional.mse_loss(pred, target).Plus(SelfRegularizer.Penalty(layers));
        loss.backward();
        var grads = layers.SelectMany(l => new[] { l.LoraA.grad!.flatten(), l.LoraB.grad!.flatten() }).Append(token.grad!.flatten()).ToList();
        return (loss.item<float>(), torch.cat(grads).detach().clone());
    }

}
