using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Every convolution of the UNet and the VAE that oneDNN's backward gets wrong (output channels not a multiple of 16)
/// must go through Models/OneDnnSafeConv when a gradient flows: a call site reverting to `conv.call` would bring back
/// the wrong gradients silently (the test host runs with oneDNN off, so no gradient test would notice). The padded
/// path calls conv2d itself, so the module's own forward hooks do not fire; the plain call (sampling) fires them.
public class OneDnnSafeCallSitesTests
{
    [Fact]
    public void Few_channel_convolutions_of_the_unet_are_bypassed_when_training_and_called_when_sampling()
    {
        using var unet = TinyModels.LoadUNet();
        using var scope = torch.NewDisposeScope();
        var few = FewChannelConvolutions(unet);
        Assert.Equal(["conv_out"], few.Keys.ToArray());

        using var generator = new Generator(5);
        var sample = torch.randn([2, 4, 16, 16], generator: generator);
        var context = torch.randn([2, 77, 32], generator: generator);
        var timestep = torch.tensor(500L);

        var called = Calls(few, () => unet.call(sample, timestep, context).sum().backward());
        Assert.Empty(called); // all went through the padded path
        using (torch.no_grad())
            called = Calls(few, () => unet.call(sample, timestep, context));
        Assert.Equal(few.Keys.Order(), called.Order()); // the hooks work: sampling uses the plain call
    }

    [Fact]
    public void Few_channel_convolutions_of_the_vae_are_bypassed_when_training_and_called_when_sampling()
    {
        using var vae = TinyModels.LoadVae();
        using var scope = torch.NewDisposeScope();
        var few = FewChannelConvolutions(vae);
        Assert.Equal(["decoder.conv_out", "encoder.conv_out", "post_quant_conv", "quant_conv"], few.Keys.Order().ToArray());

        using var generator = new Generator(6);
        var image = torch.rand([1, 3, 32, 32], generator: generator).Times(2).Minus(1);
        var latent = torch.randn([1, 4, 16, 16], generator: generator).requires_grad_(true); // as in VAE training: a posterior sample

        var called = Calls(few, () =>
        {
            var (mean, logVar) = vae.Encode(image);
            mean.sum().Plus(logVar.sum()).Plus(vae.Decode(latent).sum()).backward(); // Plus: an owned alpha (Runtime/OwnedScalars)
        });
        Assert.Empty(called);
        using (torch.no_grad())
            called = Calls(few, () => { vae.Encode(image); vae.Decode(latent); });
        Assert.Equal(few.Keys.Order(), called.Order());
    }

    /// The model's convolutions whose output channels are not a multiple of oneDNN's block of 16, by name.
    private static Dictionary<string, Conv2d> FewChannelConvolutions(nn.Module model) =>
        model.named_modules()
            .Where(m => m.module is Conv2d c && c.weight!.shape[0] % 16 != 0)
            .ToDictionary(m => m.name, m => (Conv2d)m.module);

    /// The names of the convolutions whose own forward ran (module hooks fire only through `call`) during `run`.
    private static List<string> Calls(Dictionary<string, Conv2d> convolutions, Action run)
    {
        var called = new List<string>();
        var hooks = convolutions.Select(kv => kv.Value.register_forward_hook(_ => called.Add(kv.Key))).ToList();
        try { run(); }
        finally { foreach (var h in hooks) h.remove(); }
        return called;
    }
}
