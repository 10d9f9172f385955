using System.Globalization;
using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// One sampling timestep with diffusers' dtype: DDIM and DPM-Solver++ use integer timesteps (int64 tensors),
/// Euler uses float32 ones (e.g. 927.6429). Value holds the number exactly (every int64 < 2^53 and every float32
/// is a double), so the UNet sees the same timestep diffusers feeds it.
public readonly record struct Timestep(double Value, bool IsInteger)
{
    public static Timestep Integer(long value) => new(value, true);
    public static Timestep Float(float value) => new(value, false);

    /// The integer timestep (DDIM / DPM-Solver++), e.g. to index alphas_cumprod.
    public long AsInteger => IsInteger ? (long)Value : throw new InvalidOperationException($"timestep {this} is not an integer timestep");

    /// A 0-dim tensor as diffusers passes it to the UNet: int64 for integer timesteps, float32 otherwise.
    public Tensor ToTensor(Device? device = null) =>
        IsInteger ? tensor((long)Value, device: device) : tensor((float)Value, device: device);

    public override string ToString() =>
        IsInteger ? ((long)Value).ToString(CultureInfo.InvariantCulture) : ((float)Value).ToString("R", CultureInfo.InvariantCulture);
}
