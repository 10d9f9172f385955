using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers `Timesteps`: sinusoidal features of the (float) timestep. No parameters.
/// freqs = exp(-ln(10000) * arange(half) / (half - freq_shift)); emb = t * freqs; [sin, cos] or, with
/// flip_sin_to_cos, [cos, sin]. The op order copies diffusers' get_timestep_embedding so fp32 rounding matches.
public sealed class Timesteps : nn.Module<Tensor, Tensor>
{
    private const double MaxPeriod = 10000;
    private readonly int _dim;
    private readonly bool _flipSinToCos;
    private readonly double _freqShift;

    public Timesteps(int dim, bool flipSinToCos, double freqShift) : base(nameof(Timesteps))
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "timestep embedding width must be positive");
        _dim = dim; _flipSinToCos = flipSinToCos; _freqShift = freqShift;
        RegisterComponents();
    }

    /// `timesteps`: 1-D, one (int or float) timestep per sample. Returns [N, dim] float32.
    public override Tensor forward(Tensor timesteps)
    {
        if (timesteps.dim() != 1) throw new ArgumentException($"timesteps must be 1-D, got shape [{string.Join(", ", timesteps.shape)}]", nameof(timesteps));
        using var scope = torch.NewDisposeScope();
        int half = _dim / 2;
        var exponent = OwnedScalars.Arange(0, half, ScalarType.Float32, timesteps.device).Times(-Math.Log(MaxPeriod));
        exponent = exponent.DividedBy(half - _freqShift);
        var freqs = exponent.exp();
        var args = timesteps.unsqueeze(1).to_type(ScalarType.Float32) * freqs.unsqueeze(0);
        var emb = torch.cat([args.sin(), args.cos()], dim: -1);
        if (_flipSinToCos) emb = torch.cat([emb[.., half..], emb[.., ..half]], dim: -1);
        if (_dim % 2 == 1) emb = nn.functional.pad(emb, (0, 1, 0, 0));
        return emb.MoveToOuterDisposeScope();
    }
}

/// diffusers `TimestepEmbedding`: linear_1 -> SiLU -> linear_2 (keys `time_embedding.linear_1/2`).
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1;
    private readonly Linear linear_2;

    public TimestepEmbedding(int inChannels, int timeEmbedDim) : base(nameof(TimestepEmbedding))
    {
        linear_1 = nn.Linear(inChannels, timeEmbedDim);
        linear_2 = nn.Linear(timeEmbedDim, timeEmbedDim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var h = linear_1.call(sample);
        using var a = nn.functional.silu(h);
        return linear_2.call(a);
    }
}
