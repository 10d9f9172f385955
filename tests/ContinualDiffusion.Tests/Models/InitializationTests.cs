using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Freshly built (not loaded) models are usable: PyTorch-style init, no uninitialised memory.
public class InitializationTests
{
    [Fact]
    public void Fresh_unet_and_vae_have_finite_parameters_and_unit_group_norms()
    {
        // Dirty the allocator first so uninitialised tensors would likely pick up NaNs.
        for (int i = 0; i < 8; i++) torch.ones(4096).Times(float.NaN).Dispose();
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(TinyModels.UNetDir, "config.json")));
        using var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(TinyModels.VaeDir, "config.json")));
        var all = unet.named_parameters().Concat(vae.named_parameters()).ToList();
        Assert.All(all, p => Assert.True(p.parameter.isfinite().all().item<bool>(), p.name));
        var groupNorms = unet.named_modules().Concat(vae.named_modules()).Select(m => m.module).OfType<TorchSharp.Modules.GroupNorm>().ToList();
        Assert.NotEmpty(groupNorms);
        Assert.All(groupNorms, g =>
        {
            Assert.True(g.weight!.EqualTo(1).all().item<bool>());
            Assert.True(g.bias!.EqualTo(0).all().item<bool>());
        });
    }
}
