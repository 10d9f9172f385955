using ContinualDiffusion.Runtime;
using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// The forward (noising) process of a scheduler config: betas and alphas_cumprod computed in float32 exactly as
/// diffusers does (torch.linspace in float32, squared for scaled_linear, cumprod), plus the training-side
/// operations diffusers' DDPMScheduler provides (add_noise, get_velocity) and the loss target per prediction type.
public sealed class NoiseSchedule
{
    private readonly float[] _betas;
    private readonly float[] _alphasCumprod;

    public NoiseSchedule(SchedulerConfig config)
    {
        config.Validate();
        NumTrainTimesteps = config.NumTrainTimesteps;
        PredictionType = config.PredictionType;
        _betas = ComputeBetas(config);
        _alphasCumprod = CumulativeAlphas(_betas);
    }

    public int NumTrainTimesteps { get; }

    /// "epsilon", "v_prediction" or "sample": what the UNet predicts, hence what TrainingTarget returns.
    public string PredictionType { get; }

    public IReadOnlyList<float> Betas => _betas;

    /// alphas_cumprod[t] = prod_{s<=t} (1 - beta_s), float32 as in diffusers.
    public IReadOnlyList<float> AlphasCumprod => _alphasCumprod;

    /// alphas_cumprod as a new float32 tensor [NumTrainTimesteps] (caller owns it).
    public Tensor AlphasCumprodTensor() => tensor(_alphasCumprod, ScalarType.Float32);

    /// sqrt(acp[t]) * x0 + sqrt(1 - acp[t]) * noise, per batch element (DDPMScheduler.add_noise).
    public Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var (sqrtAlpha, sqrtOneMinusAlpha) = Coefficients(timesteps, x0);
        return (sqrtAlpha * x0).Plus(sqrtOneMinusAlpha * noise).MoveToOuterDisposeScope();
    }

    /// The v-prediction target sqrt(acp[t]) * noise - sqrt(1 - acp[t]) * x0 (DDPMScheduler.get_velocity).
    public Tensor GetVelocity(Tensor x0, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var (sqrtAlpha, sqrtOneMinusAlpha) = Coefficients(timesteps, x0);
        return (sqrtAlpha * noise - sqrtOneMinusAlpha * x0).MoveToOuterDisposeScope();
    }

    /// What the UNet output is regressed to: the noise (epsilon), the velocity (v_prediction) or x0 (sample).
    /// Always a new tensor handle, so the caller may dispose it independently of x0 / noise.
    public Tensor TrainingTarget(Tensor x0, Tensor noise, Tensor timesteps) => PredictionType switch
    {
        "epsilon" => noise.alias(),
        "v_prediction" => GetVelocity(x0, noise, timesteps),
        "sample" => x0.alias(),
        _ => throw new InvalidOperationException($"prediction_type '{PredictionType}' has no training target"),
    };

    /// sqrt(acp[t]) and sqrt(1-acp[t]) as [T, 1, ..., 1] tensors broadcasting against `like` (T = 1 or batch size).
    /// Computed in float32 like diffusers (acp cast to the sample dtype, then ** 0.5).
    private (Tensor SqrtAlpha, Tensor SqrtOneMinusAlpha) Coefficients(Tensor timesteps, Tensor like)
    {
        long[] ts = ReadTimesteps(timesteps);
        if (ts.Length != 1 && like.dim() > 0 && ts.Length != like.shape[0])
            throw new ArgumentException($"timesteps has {ts.Length} values but the batch has {like.shape[0]} samples (expected 1 or one per sample)", nameof(timesteps));
        var sqrtAlpha = new float[ts.Length];
        var sqrtOneMinusAlpha = new float[ts.Length];
        for (int i = 0; i < ts.Length; i++)
        {
            float acp = _alphasCumprod[ts[i]];
            sqrtAlpha[i] = MathF.Sqrt(acp);
            sqrtOneMinusAlpha[i] = MathF.Sqrt(1f - acp);
        }
        var shape = new long[Math.Max(1, (int)like.dim())];
        Array.Fill(shape, 1L);
        shape[0] = ts.Length;
        return (tensor(sqrtAlpha).reshape(shape).to(like.dtype, like.device),
                tensor(sqrtOneMinusAlpha).reshape(shape).to(like.dtype, like.device));
    }

    private long[] ReadTimesteps(Tensor timesteps)
    {
        if (timesteps.dtype is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64)
            throw new ArgumentException($"training timesteps must be an integer tensor, got {timesteps.dtype}", nameof(timesteps));
        using var cpu = timesteps.to(ScalarType.Int64, CPU).flatten();
        long[] ts = cpu.data<long>().ToArray();
        foreach (var t in ts)
            if (t < 0 || t >= NumTrainTimesteps)
                throw new ArgumentOutOfRangeException(nameof(timesteps), $"timestep {t} is outside [0, {NumTrainTimesteps})");
        return ts;
    }

    private static float[] ComputeBetas(SchedulerConfig config)
    {
        if (config.TrainedBetas is { } trained) return trained.Select(b => (float)b).ToArray();
        int n = config.NumTrainTimesteps;
        return config.BetaSchedule switch
        {
            // torch.linspace(beta_start, beta_end, n, dtype=float32): float32 arithmetic inside ATen, so use it.
            "linear" => TorchLinspace(config.BetaStart, config.BetaEnd, n, square: false),
            "scaled_linear" => TorchLinspace(Math.Sqrt(config.BetaStart), Math.Sqrt(config.BetaEnd), n, square: true),
            "squaredcos_cap_v2" => CosineBetas(n),
            _ => throw new InvalidOperationException($"beta_schedule '{config.BetaSchedule}' is not supported"),
        };
    }

    /// torch.linspace(start, end, n, dtype=float32) as ATen's CPU kernel computes it (torch 1.13, which produced the
    /// reference; the AVX2 build contracts a + b*c into an FMA). Computed here rather than by the linked libtorch so
    /// betas are bit-identical to the reference on every machine (libtorch builds differ by an ulp in places).
    /// The kernel: step = (end - start) / (n - 1) in float; elements below n/2 count up from start, the rest down
    /// from end; the vectorized loop handles pairs of 8-lane vectors, each lane = base + k*step with the vector's
    /// base computed like a scalar element, and the remaining (< 16) elements one by one.
    private static float[] TorchLinspace(double start, double end, int n, bool square)
    {
        const int lanes = 8;
        float s = (float)start, e = (float)end;
        var values = new float[n];
        if (n == 1) values[0] = s;
        else
        {
            float step = (e - s) / (n - 1);
            int halfway = n / 2;
            float Element(int idx) => idx < halfway
                ? MathF.FusedMultiplyAdd(step, idx, s)
                : MathF.FusedMultiplyAdd(-step, n - idx - 1, e);
            int i = 0;
            for (; i <= n - 2 * lanes; i += 2 * lanes)
            {
                foreach (int v in (int[])[i, i + lanes])
                {
                    float vectorBase = Element(v);
                    for (int k = 0; k < lanes; k++) values[v + k] = MathF.FusedMultiplyAdd(step, k, vectorBase);
                }
            }
            for (; i < n; i++) values[i] = Element(i);
        }
        if (square) for (int i = 0; i < n; i++) values[i] *= values[i];
        return values;
    }

    /// diffusers' betas_for_alpha_bar (cosine, max_beta 0.999): computed in Python floats (float64), then float32.
    private static float[] CosineBetas(int n)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new float[n];
        for (int i = 0; i < n; i++)
        {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            betas[i] = (float)Math.Min(1 - AlphaBar(t2) / AlphaBar(t1), 0.999);
        }
        return betas;
    }

    /// torch.cumprod(1 - betas) on float32: ATen's CPU kernel accumulates in double and rounds each prefix to float.
    private static float[] CumulativeAlphas(float[] betas)
    {
        var result = new float[betas.Length];
        double product = 1.0;
        for (int i = 0; i < betas.Length; i++)
        {
            product *= 1f - betas[i];
            result[i] = (float)product;
        }
        return result;
    }
}
