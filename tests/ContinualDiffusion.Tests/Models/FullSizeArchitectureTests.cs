using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Real SD 1.5 / SD 2.1 configs (tests/fixtures/configs) build the diffusers architecture: parameter counts
/// equal the published diffusers models'. Built on the meta device, so no 3.4 GB allocation (libtorch has no
/// meta kernels for convolution, so a forward pass cannot be shape-checked there; `scripts/bench.sh unet` runs one).
[Collection(MetaDeviceCollection.Name)]
public class FullSizeArchitectureTests
{
    private static string ConfigPath(string model, string file) => Path.Combine(FullSizeConfigs.Dir, model, file);

    [Fact]
    public void Sd15_unet_has_859_520_964_parameters()
    {
        var config = UNetConfig.Load(ConfigPath("sd15", "unet.json"));
        using var unet = MetaDevice.Build(() => new UNet2DConditionModel(config));
        Assert.Equal(DeviceType.META, unet.parameters().First().device_type);
        Assert.Equal(859_520_964L, TinyModels.ParameterCount(unet));
        Assert.Equal(686, unet.named_parameters().Count());
        // 16 transformer blocks: 2 x 3 down levels, 3 x 3 up levels, 1 mid.
        Assert.Equal(16, unet.CrossAttentions().Count);
    }

    [Fact]
    public void Sd15_vae_has_83_653_863_parameters_and_scale_factor_8()
    {
        var config = VaeConfig.Load(ConfigPath("sd15", "vae.json"));
        using var vae = MetaDevice.Build(() => new AutoencoderKL(config));
        Assert.Equal(83_653_863L, TinyModels.ParameterCount(vae));
        Assert.Equal(8, vae.VaeScaleFactor);
        Assert.Equal(0.18215, vae.ScalingFactor);
    }

    [Fact]
    public void Sd21_unet_has_865_910_724_parameters_with_linear_projections()
    {
        // SD 1.5 + the wider text context: attn2.to_k/to_v grow by 2 * (1024 - 768) * C over the 16 transformer
        // blocks (sum of C = 12,480): 859,520,964 + 6,389,760. Linear and 1x1-conv projections have equal counts.
        var config = UNetConfig.Load(ConfigPath("sd21", "unet.json"));
        Assert.Equal([5, 10, 20, 20], config.AttentionHeads());
        using var unet = MetaDevice.Build(() => new UNet2DConditionModel(config));
        Assert.Equal(865_910_724L, TinyModels.ParameterCount(unet));
        var shapes = unet.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal([320L, 320L], shapes["down_blocks.0.attentions.0.proj_in.weight"]);
        Assert.Equal([1280L, 1280L], shapes["mid_block.attentions.0.proj_out.weight"]);
        Assert.Equal([1280L, 1024L], shapes["up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight"]);
        // 64-wide heads everywhere: 320/5, 640/10, 1280/20.
        Assert.All(unet.CrossAttentions(), a => Assert.Equal(64, a.Attention.Options.DimHead));
    }
}

/// tests/fixtures/configs: the diffusers configs of real SD releases (sd15: runwayml v1-5, sd21: stabilityai 2-1).
public static class FullSizeConfigs
{
    public static string Dir => Path.Combine(Fixture.Root, "tests", "fixtures", "configs");
}
