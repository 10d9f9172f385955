using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Support;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// The sd-tiny UNet and VAE built from their config.json and loaded strictly from the fixture weights.
public static class TinyModels
{
    public static string UNetDir => Path.Combine(Fixture.SdTiny, "unet");
    public static string VaeDir => Path.Combine(Fixture.SdTiny, "vae");
    public static string UNetWeights => Path.Combine(UNetDir, "diffusion_pytorch_model.safetensors");
    public static string VaeWeights => Path.Combine(VaeDir, "diffusion_pytorch_model.safetensors");

    public static UNet2DConditionModel LoadUNet()
    {
        var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(UNetDir, "config.json")));
        StateDictLoader.LoadStrict(unet, UNetWeights);
        unet.eval();
        return unet;
    }

    public static AutoencoderKL LoadVae()
    {
        var vae = new AutoencoderKL(VaeConfig.Load(Path.Combine(VaeDir, "config.json")));
        StateDictLoader.LoadStrict(vae, VaeWeights);
        vae.eval();
        return vae;
    }

    public static long ParameterCount(nn.Module module) => module.parameters().Sum(p => p.numel());

    // reference.json parameter_counts (Fixture.ReferenceJson cannot parse that file yet: it holds -Infinity).
    public const long TinyUNetParameters = 2_164_452;
    public const long TinyVaeParameters = 843_847;
}
