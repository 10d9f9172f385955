using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers AutoencoderKL: image [-1, 1] <-> latent. `Encode` gives the diagonal-Gaussian posterior,
/// `Decode` the image. Latent scaling is the caller's job (pipelines use latents * ScalingFactor for the UNet
/// and decode latents / ScalingFactor), as in diffusers.
public sealed class AutoencoderKL : nn.Module
{
    private readonly VaeEncoder encoder;
    private readonly VaeDecoder decoder;
    private readonly Conv2d quant_conv;
    private readonly Conv2d post_quant_conv;

    public VaeConfig Config { get; }

    /// `scaling_factor` from the config (0.18215 for SD 1.x/2.x).
    public double ScalingFactor => Config.ScalingFactor;

    /// Pixels per latent cell: 2^(len(block_out_channels) - 1), i.e. 8 for SD.
    public int VaeScaleFactor => Config.VaeScaleFactor;

    public AutoencoderKL(VaeConfig config) : base(nameof(AutoencoderKL))
    {
        config.Validate();
        Config = config;
        int latent = config.LatentChannels;
        encoder = new VaeEncoder(config);
        decoder = new VaeDecoder(config);
        quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1);
        post_quant_conv = nn.Conv2d(latent, latent, 1);
        RegisterComponents();
    }

    /// Posterior of `image` [B, in_channels, H, W] in [-1, 1]: mean and log-variance [B, latent_channels, H/f, W/f],
    /// the log-variance clamped to [-30, 20] like diffusers' DiagonalGaussianDistribution.
    public (Tensor Mean, Tensor LogVar) Encode(Tensor image)
    {
        using var scope = torch.NewDisposeScope();
        var outputDType = image.dtype;
        var weights = quant_conv.weight!.dtype;
        var moments = OneDnnSafeConv.Forward(quant_conv, encoder.call(image.dtype == weights ? image : image.to(weights)));
        if (moments.dtype != outputDType) moments = moments.to(outputDType); // the posterior's arithmetic in the caller's dtype
        var halves = moments.chunk(2, dim: 1);
        var mean = halves[0].contiguous();
        var logvar = halves[1].Clamped(-30.0, 20.0);
        return (mean.MoveToOuterDisposeScope(), logvar.MoveToOuterDisposeScope());
    }

    /// exp(0.5 * logvar), the posterior's standard deviation.
    public static Tensor Std(Tensor logVar)
    {
        using var half = logVar.Times(0.5);
        return half.exp();
    }

    /// One posterior sample: mean + std * N(0, 1) (noise drawn with `generator` for reproducibility).
    public static Tensor SamplePosterior(Tensor mean, Tensor logVar, Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        var noise = torch.randn(mean.shape, dtype: mean.dtype, device: mean.device, generator: generator);
        return mean.Plus(Std(logVar) * noise).MoveToOuterDisposeScope();
    }

    /// Image [B, out_channels, h*f, w*f] (unclamped, about [-1, 1]) from an (unscaled) latent [B, latent_channels, h, w],
    /// computed in the VAE's dtype and returned in the latent's.
    public Tensor Decode(Tensor latent)
    {
        using var scope = torch.NewDisposeScope();
        var weights = post_quant_conv.weight!.dtype;
        var image = decoder.call(OneDnnSafeConv.Forward(post_quant_conv, latent.dtype == weights ? latent : latent.to(weights)));
        return (image.dtype == latent.dtype ? image : image.to(latent.dtype)).MoveToOuterDisposeScope();
    }
}
