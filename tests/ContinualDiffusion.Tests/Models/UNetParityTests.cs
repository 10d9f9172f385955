using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// UNet2DConditionModel against diffusers 0.27.2 outputs on the sd-tiny fixture (fp32, relative error <= 1e-4).
public class UNetParityTests
{
    private static readonly string[] Points =
    [
        "time_proj", "time_embedding", "conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.2",
        "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2", "conv_norm_out", "conv_out",
    ];

    public static TheoryData<string> DebugPoints => new(Points);

    [Fact]
    public void Tiny_unet_has_the_reference_parameter_count()
    {
        using var unet = TinyModels.LoadUNet();
        Assert.Equal(TinyModels.TinyUNetParameters, TinyModels.ParameterCount(unet));
    }

    [Fact]
    public void Output_matches_diffusers_for_a_batch_with_int64_timesteps()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        using var noGrad = torch.no_grad();
        var timesteps = Fixture.Ref("unet.timesteps");
        Assert.Equal(ScalarType.Int64, timesteps.dtype);
        var output = unet.call(Fixture.Ref("unet.sample"), timesteps, Fixture.Ref("unet.encoder_hidden_states"));
        Fixture.AssertClose(output, Fixture.Ref("unet.out"), what: "unet.out");
    }

    [Fact]
    public void Output_matches_diffusers_for_a_scalar_float_timestep()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        using var noGrad = torch.no_grad();
        var timestep = Fixture.Ref("unet.case2.timestep");
        Assert.Equal(0L, timestep.dim());
        var output = unet.call(Fixture.Ref("unet.case2.sample"), timestep, Fixture.Ref("unet.case2.encoder_hidden_states"));
        Fixture.AssertClose(output, Fixture.Ref("unet.case2.out"), what: "unet.case2.out");
    }

    [Theory]
    [MemberData(nameof(DebugPoints))]
    public void Intermediate_output_matches_diffusers(string point)
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        using var noGrad = torch.no_grad();
        var captured = new Dictionary<string, Tensor>();
        unet.Trace = (name, t) => captured[name] = t.clone().DetachFromDisposeScope();
        unet.call(Fixture.Ref("unet.sample"), Fixture.Ref("unet.timesteps"), Fixture.Ref("unet.encoder_hidden_states"));
        Assert.Equal(Points.Order(StringComparer.Ordinal), captured.Keys.Order(StringComparer.Ordinal));
        using var actual = captured[point];
        Fixture.AssertClose(actual, Fixture.Ref("unet.debug." + point), what: "unet.debug." + point);
        foreach (var t in captured.Values) t.Dispose();
    }

    [Fact]
    public void Timestep_given_once_is_broadcast_to_the_batch()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = TinyModels.LoadUNet();
        using var noGrad = torch.no_grad();
        var sample = Fixture.Ref("unet.sample");
        var context = Fixture.Ref("unet.encoder_hidden_states");
        var scalar = unet.call(sample, torch.tensor(500L), context);
        var perSample = unet.call(sample, torch.tensor(new long[] { 500, 500 }), context);
        Assert.Equal(0.0, Fixture.RelError(scalar, perSample));
        Assert.Throws<ArgumentException>(() => unet.call(sample, torch.tensor(new long[] { 1, 2, 3 }), context));
    }
}
