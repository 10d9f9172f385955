using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Runtime;

/// Where a command computes and in which precision the frozen weights are held (`--device`, `--dtype`, `--vae-fp32`).
///
/// The frozen weights (UNet, text encoder, VAE) are held in `Weights`; what trains (LoRA factors, dense deltas, the
/// token embedding) and the optimiser's state stay float32 whatever it is, as do the loss, the penalty, the noise
/// schedule's arithmetic and every file cdiff writes. Modules compute in their weights' dtype and hand results back
/// in the dtype they were given (the UNet returns float32 for float32 latents). `VaeFp32` keeps the VAE in float32
/// while the rest is half precision (the classic fix for black or speckled decodes in fp16).
public sealed record ComputePrecision(ScalarType Weights, bool VaeFp32 = false)
{
    public static readonly ComputePrecision Float32 = new(ScalarType.Float32);

    public static readonly IReadOnlyList<string> DTypeNames = ["fp32", "bf16", "fp16"];

    public bool IsHalf => Weights is ScalarType.BFloat16 or ScalarType.Float16;

    /// The VAE's dtype: float32 with `VaeFp32`, else the weights'.
    public ScalarType VaeWeights => VaeFp32 ? ScalarType.Float32 : Weights;

    public string Name => Weights switch { ScalarType.BFloat16 => "bf16", ScalarType.Float16 => "fp16", _ => "fp32" };

    /// The dtype of what trains next to frozen weights of dtype `weights`: float32 for half-precision weights, else
    /// the weights' own (float64 in the tests that check gradients at that precision).
    public static ScalarType TrainableFor(ScalarType weights) => weights is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : weights;

    /// `--dtype` and `--vae-fp32` for `device`. fp16 is refused on the CPU: libtorch's CPU half-precision kernels are
    /// incomplete (some convolutions and norms have none) and slow, and bf16 is the CPU's half format.
    public static ComputePrecision Parse(string? dtype, bool vaeFp32, Device device)
    {
        var weights = (dtype ?? "fp32") switch
        {
            "fp32" => ScalarType.Float32,
            "bf16" => ScalarType.BFloat16,
            "fp16" => ScalarType.Float16,
            var other => throw new InputException($"--dtype {other}: expected one of {string.Join(", ", DTypeNames)}"),
        };
        if (weights == ScalarType.Float16 && device.type == DeviceType.CPU)
            throw new InputException("--dtype fp16: not on the CPU (libtorch has no complete fp16 CPU kernels); use --dtype bf16 there, fp16 on --device cuda");
        if (vaeFp32 && weights == ScalarType.Float32)
            throw new InputException("--vae-fp32: the VAE is float32 already with --dtype fp32 (it applies with bf16 or fp16)");
        return new ComputePrecision(weights, vaeFp32);
    }

    /// `--device cpu|cuda|cuda:N` (null: CUDA when this build has a visible device, else the CPU).
    public static Device ParseDevice(string? text)
    {
        if (text is null) return TorchEnvironment.DefaultDevice();
        if (text == "cpu") return torch.CPU;
        var m = System.Text.RegularExpressions.Regex.Match(text, "^cuda(?::([0-9]{1,3}))?$");
        if (!m.Success) throw new InputException($"--device {text}: expected cpu, cuda or cuda:N");
        if (TorchEnvironment.Backend != "cuda")
            throw new InputException($"--device {text}: this cdiff is the CPU build (TorchSharp-cpu, MSBuild property TorchBackend=cpu); build with `dotnet build -c Release -p:TorchBackend=cuda` for CUDA (README, GPU build)");
        if (!torch.cuda.is_available()) throw new InputException($"--device {text}: no CUDA device is visible to libtorch (driver, CUDA_VISIBLE_DEVICES?)");
        int index = m.Groups[1].Success ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        int count = torch.cuda.device_count();
        if (index >= count) throw new InputException($"--device {text}: there {(count == 1 ? "is 1 CUDA device" : $"are {count} CUDA devices")} (cuda:0..cuda:{count - 1})");
        return torch.device(DeviceType.CUDA, index);
    }
}
