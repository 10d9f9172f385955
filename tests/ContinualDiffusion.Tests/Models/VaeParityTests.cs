using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// AutoencoderKL against diffusers 0.27.2 on the sd-tiny fixture (fp32, relative error <= 1e-4).
public class VaeParityTests
{
    [Fact]
    public void Tiny_vae_has_the_reference_parameter_count_and_scale_factors()
    {
        using var vae = TinyModels.LoadVae();
        Assert.Equal(TinyModels.TinyVaeParameters, TinyModels.ParameterCount(vae));
        Assert.Equal(2, vae.VaeScaleFactor);
        Assert.Equal(0.18215, vae.ScalingFactor);
    }

    [Fact]
    public void Encode_gives_the_diffusers_posterior()
    {
        using var scope = torch.NewDisposeScope();
        using var vae = TinyModels.LoadVae();
        using var noGrad = torch.no_grad();
        var (mean, logVar) = vae.Encode(Fixture.Ref("vae.image"));
        Fixture.AssertClose(mean, Fixture.Ref("vae.posterior_mean"), what: "vae.posterior_mean");
        Fixture.AssertClose(logVar, Fixture.Ref("vae.posterior_logvar"), what: "vae.posterior_logvar");
        Fixture.AssertClose(AutoencoderKL.Std(logVar), Fixture.Ref("vae.posterior_std"), what: "vae.posterior_std");
    }

    [Fact]
    public void Decode_gives_the_diffusers_image()
    {
        using var scope = torch.NewDisposeScope();
        using var vae = TinyModels.LoadVae();
        using var noGrad = torch.no_grad();
        // The fixture's latent is already divided by scaling_factor (reference.json: vae.decode_latent).
        var image = vae.Decode(Fixture.Ref("vae.decode_latent"));
        Fixture.AssertClose(image, Fixture.Ref("vae.decoded"), what: "vae.decoded");
    }

    [Fact]
    public void Log_variance_is_clamped_to_the_diffusers_range()
    {
        using var scope = torch.NewDisposeScope();
        using var vae = TinyModels.LoadVae();
        using var noGrad = torch.no_grad();
        // Blow up quant_conv's log-variance half so the clamp has to act on both ends.
        var bias = vae.named_parameters().Single(p => p.name == "quant_conv.bias").parameter;
        bias[4..6].FillInPlace(1e4);
        bias[6..8].FillInPlace(-1e4);
        var (_, logVar) = vae.Encode(Fixture.Ref("vae.image"));
        Assert.Equal(20f, logVar[.., 0..2].min().item<float>());
        Assert.Equal(-30f, logVar[.., 2..4].max().item<float>());
    }

    [Fact]
    public void Posterior_sample_is_mean_plus_std_times_seeded_noise()
    {
        using var scope = torch.NewDisposeScope();
        var mean = OwnedScalars.Full([1, 4, 2, 2], 0.5f);
        var logVar = OwnedScalars.Full([1, 4, 2, 2], (float)Math.Log(4.0));
        using var gen64_1 = new Generator(7);
        var a = AutoencoderKL.SamplePosterior(mean, logVar, gen64_1);
        using var gen65_1 = new Generator(7);
        var noise = torch.randn(new long[] { 1, 4, 2, 2 }, generator: gen65_1);
        Fixture.AssertClose(a, noise.Times(2f).Plus(0.5f), 1e-6, "posterior sample");
    }
}
