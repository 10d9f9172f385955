using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Training goes through the same forward: disposing intermediates inside forward must not break autograd.
public class UNetGradientTests
{
    [Fact]
    public void Gradients_reach_a_cross_attention_projection_and_match_a_finite_difference()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        unet.train();
        foreach (var p in unet.parameters()) p.requires_grad = false;
        var (prefix, _) = unet.CrossAttentions()[2];
        var weight = unet.named_parameters().Single(p => p.name == prefix + ".to_k.weight").parameter;
        weight.requires_grad = true;

        var sample = Fixture.Ref("unet.sample");
        var t = Fixture.Ref("unet.timesteps");
        var context = Fixture.Ref("unet.encoder_hidden_states");
        Tensor Loss() => unet.call(sample, t, context).Squared().mean();

        var loss = Loss();
        loss.backward();
        var grad = weight.grad!;
        Assert.True(grad.isfinite().all().item<bool>());
        Assert.True(grad.abs().max().item<float>() > 0f);
        Assert.All(unet.named_parameters().Where(p => p.name != prefix + ".to_k.weight"), p => Assert.Null(p.parameter.grad));

        // Directional derivative along the gradient vs a central difference (float32: loose but meaningful).
        using var noGrad = torch.no_grad();
        var direction = grad / grad.norm();
        const double h = 1e-2;
        weight.AddInPlace(direction.Times(h));
        double plus = Loss().item<float>();
        weight.AddInPlace(direction.Times(-2 * h));
        double minus = Loss().item<float>();
        weight.AddInPlace(direction.Times(h));
        double numeric = (plus - minus) / (2 * h);
        double analytic = grad.norm().item<float>();
        Assert.InRange(numeric / analytic, 0.95, 1.05);
    }
}
