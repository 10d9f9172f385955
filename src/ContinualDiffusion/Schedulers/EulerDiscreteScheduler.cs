using ContinualDiffusion.Runtime;
using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// diffusers' EulerDiscreteScheduler (0.27.2) without churn (s_churn = 0, so deterministic): float32 timesteps
/// (linspace spacing by default: np.linspace(0, 999, N) in float32), sigmas linearly interpolated (np.interp in
/// float64) from the training sigmas at those timesteps, with a trailing 0. The UNet input is x / sqrt(sigma^2 + 1);
/// the initial noise sigma is the largest sigma for linspace / trailing spacing and sqrt(max^2 + 1) for leading.
public sealed class EulerDiscreteScheduler : IScheduler
{
    public const string SamplerName = "euler";

    private readonly float[] _trainSigmas;
    private readonly string _spacing;
    private Timestep[] _timesteps = [];
    private float[] _sigmas = [];
    private int? _stepIndex;

    public EulerDiscreteScheduler(SchedulerConfig config)
    {
        config.Validate();
        config.RequireOneOf("interpolation_type", config.InterpolationType, ["linear"]);
        config.RequireOneOf("timestep_type", config.TimestepType, ["discrete"]);
        config.RequireDefault("use_karras_sigmas", config.UseKarrasSigmas, false);
        config.RequireDefault("use_exponential_sigmas", config.UseExponentialSigmas, false);
        config.RequireDefault("use_beta_sigmas", config.UseBetaSigmas, false);
        Config = config;
        Schedule = new NoiseSchedule(config);
        _trainSigmas = TrainSigmas.From(Schedule.AlphasCumprod);
        _spacing = config.TimestepSpacing ?? "linspace";
    }

    public string Name => SamplerName;
    public SchedulerConfig Config { get; }
    public NoiseSchedule Schedule { get; }
    public int NumInferenceSteps { get; private set; }
    public IReadOnlyList<Timestep> Timesteps => _timesteps;

    /// sigmas[k] for timestep k, plus a final 0: NumInferenceSteps + 1 values.
    public IReadOnlyList<float> Sigmas => _sigmas;

    public double InitNoiseSigma
    {
        get
        {
            if (NumInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before reading InitNoiseSigma");
            float max = _sigmas.Max();
            return _spacing is "linspace" or "trailing" ? max : MathF.Sqrt(max * max + 1f);
        }
    }

    public void SetTimesteps(int numInferenceSteps)
    {
        int train = Config.NumTrainTimesteps;
        if (numInferenceSteps < 1 || numInferenceSteps > train)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"{numInferenceSteps} steps (expected 1..{train} = num_train_timesteps)");
        float[] timesteps = ComputeTimesteps(numInferenceSteps);
        _timesteps = timesteps.Select(Timestep.Float).ToArray();
        _sigmas = [.. timesteps.Select(t => (float)NumpyCompat.Interp(t, _trainSigmas)), 0f];
        NumInferenceSteps = numInferenceSteps;
        _stepIndex = null;
    }

    private float[] ComputeTimesteps(int steps)
    {
        int train = Config.NumTrainTimesteps;
        switch (_spacing)
        {
            case "linspace":
                return NumpyCompat.Linspace(0, train - 1, steps).Reverse().Select(v => (float)v).ToArray();
            case "leading":
            {
                int ratio = train / steps;
                // (arange(N) * ratio).round()[::-1].astype(float32) + steps_offset, the addition in float32.
                return Enumerable.Range(0, steps).Reverse().Select(i => (float)((long)i * ratio) + Config.StepsOffset).ToArray();
            }
            case "trailing":
                return NumpyCompat.Arange(train, 0, -(double)train / steps).Select(v => (float)NumpyCompat.Round(v) - 1f).ToArray();
            default:
                throw new InvalidOperationException($"timestep_spacing '{_spacing}' is not supported");
        }
    }

    public Tensor ScaleModelInput(Tensor sample, Timestep timestep)
    {
        float sigma = _sigmas[EnsureStepIndex(timestep)];
        return sample.DividedBy(MathF.Sqrt(sigma * sigma + 1f));
    }

    public Tensor Step(Tensor modelOutput, Timestep timestep, Tensor sample)
    {
        int i = EnsureStepIndex(timestep);
        if (i >= NumInferenceSteps) throw new InvalidOperationException($"all {NumInferenceSteps} steps are done; call SetTimesteps to start a new trajectory");
        float sigma = _sigmas[i];
        // s_churn = 0 gives gamma = 0: sigma_hat = sigma and no noise is added.
        float sigmaHat = sigma * (0f + 1f);

        using var scope = NewDisposeScope();
        var sample32 = sample.to(ScalarType.Float32);
        var predOriginal = Config.PredictionType switch
        {
            "epsilon" => sample32 - modelOutput.Times(sigmaHat),
            "sample" => modelOutput.alias(),
            "v_prediction" => modelOutput.Times(-sigma / MathF.Sqrt(sigma * sigma + 1f)).Plus(sample32.DividedBy(sigma * sigma + 1f)),
            _ => throw new InvalidOperationException($"prediction_type '{Config.PredictionType}' is not supported"),
        };
        var derivative = (sample32 - predOriginal).DividedBy(sigmaHat);
        float dt = _sigmas[i + 1] - sigmaHat;
        var prev = sample32.Plus(derivative.Times(dt));
        _stepIndex = i + 1;
        return prev.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }

    /// diffusers' _init_step_index: the first call locates the timestep in the schedule, later calls count on.
    private int EnsureStepIndex(Timestep timestep)
    {
        if (NumInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before ScaleModelInput / Step");
        if (_stepIndex is { } i) return i;
        int found = TrainSigmas.IndexOf(_timesteps, timestep);
        if (found < 0) throw new ArgumentException($"timestep {timestep} is not in the schedule set by SetTimesteps", nameof(timestep));
        _stepIndex = found;
        return found;
    }

    public void Dispose() { }
}
