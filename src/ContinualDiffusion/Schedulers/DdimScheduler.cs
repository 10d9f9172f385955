using ContinualDiffusion.Runtime;
using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// diffusers' DDIMScheduler (0.27.2) with eta = 0 (deterministic DDIM, the SD pipelines' default).
/// Timesteps are integers; "leading" spacing adds steps_offset (SD 1.x: 50 steps start at 981), the previous
/// timestep is always t - num_train_timesteps // steps (diffusers does so for every spacing), and below 0 it uses
/// alphas_cumprod[0] or 1 depending on set_alpha_to_one.
public sealed class DdimScheduler : IScheduler
{
    public const string SamplerName = "ddim";

    private readonly float[] _alphasCumprod;
    private readonly float _finalAlphaCumprod;
    private readonly string _spacing;
    private readonly bool _clipSample;
    private readonly float _clipSampleRange;
    private Timestep[] _timesteps = [];

    public DdimScheduler(SchedulerConfig config)
    {
        config.Validate();
        config.RequireDefault("thresholding", config.Thresholding, false);
        Config = config;
        Schedule = new NoiseSchedule(config);
        _alphasCumprod = [.. Schedule.AlphasCumprod];
        // Class defaults of DDIMScheduler for keys the file may not carry (e.g. an SD 1.5 PNDM config).
        _finalAlphaCumprod = (config.SetAlphaToOne ?? true) ? 1f : _alphasCumprod[0];
        _spacing = config.TimestepSpacing ?? "leading";
        _clipSample = config.ClipSample ?? true;
        _clipSampleRange = (float)config.ClipSampleRange;
        if (_clipSample && !(config.ClipSampleRange > 0)) config.Fail("clip_sample_range", $"{config.ClipSampleRange} (expected > 0)");
    }

    public string Name => SamplerName;
    public SchedulerConfig Config { get; }
    public NoiseSchedule Schedule { get; }
    public int NumInferenceSteps { get; private set; }
    public IReadOnlyList<Timestep> Timesteps => _timesteps;
    public double InitNoiseSigma => 1.0;

    public void SetTimesteps(int numInferenceSteps)
    {
        int train = Config.NumTrainTimesteps;
        if (numInferenceSteps < 1 || numInferenceSteps > train)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"{numInferenceSteps} steps (expected 1..{train} = num_train_timesteps)");
        NumInferenceSteps = numInferenceSteps;
        _timesteps = ComputeTimesteps(numInferenceSteps).Select(Timestep.Integer).ToArray();
    }

    private long[] ComputeTimesteps(int steps)
    {
        int train = Config.NumTrainTimesteps;
        switch (_spacing)
        {
            case "linspace":
                return NumpyCompat.Linspace(0, train - 1, steps).Reverse().Select(v => (long)NumpyCompat.Round(v)).ToArray();
            case "leading":
            {
                int ratio = train / steps;
                return Enumerable.Range(0, steps).Reverse().Select(i => (long)i * ratio + Config.StepsOffset).ToArray();
            }
            case "trailing":
                return NumpyCompat.Arange(train, 0, -(double)train / steps).Select(v => (long)NumpyCompat.Round(v) - 1).ToArray();
            default:
                throw new InvalidOperationException($"timestep_spacing '{_spacing}' is not supported");
        }
    }

    /// DDIM needs no input scaling; returns a new handle to the same storage.
    public Tensor ScaleModelInput(Tensor sample, Timestep timestep) => sample.alias();

    public Tensor Step(Tensor modelOutput, Timestep timestep, Tensor sample)
    {
        if (NumInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before Step");
        long t = timestep.AsInteger;
        if (t < 0 || t >= _alphasCumprod.Length) throw new ArgumentOutOfRangeException(nameof(timestep), $"timestep {t} is outside [0, {_alphasCumprod.Length})");
        long prev = t - Config.NumTrainTimesteps / NumInferenceSteps;

        // Scalars in float32, as diffusers computes them on 0-dim float32 tensors.
        float alphaProdT = _alphasCumprod[t];
        float alphaProdPrev = prev >= 0 ? _alphasCumprod[prev] : _finalAlphaCumprod;
        float betaProdT = 1f - alphaProdT;
        float sqrtAlpha = MathF.Sqrt(alphaProdT), sqrtBeta = MathF.Sqrt(betaProdT);

        using var scope = NewDisposeScope();
        var (predOriginal, predEpsilon) = Predictions(modelOutput, sample, sqrtAlpha, sqrtBeta);
        if (_clipSample) predOriginal = predOriginal.Clamped(-_clipSampleRange, _clipSampleRange);

        // eta = 0: std_dev_t = 0, so the direction term keeps all of (1 - alpha_prev).
        var direction = predEpsilon.Times(MathF.Sqrt(1f - alphaProdPrev - 0f));
        var prevSample = predOriginal.Times(MathF.Sqrt(alphaProdPrev)).Plus(direction);
        return prevSample.MoveToOuterDisposeScope();
    }

    /// (x0, epsilon) predicted from the model output per prediction_type.
    private (Tensor X0, Tensor Epsilon) Predictions(Tensor modelOutput, Tensor sample, float sqrtAlpha, float sqrtBeta) =>
        Config.PredictionType switch
        {
            "epsilon" => ((sample - modelOutput.Times(sqrtBeta)).DividedBy(sqrtAlpha), modelOutput.alias()),
            "sample" => (modelOutput.alias(), (sample - modelOutput.Times(sqrtAlpha)).DividedBy(sqrtBeta)),
            "v_prediction" => (sample.Times(sqrtAlpha) - modelOutput.Times(sqrtBeta), modelOutput.Times(sqrtAlpha).Plus(sample.Times(sqrtBeta))),
            _ => throw new InvalidOperationException($"prediction_type '{Config.PredictionType}' is not supported"),
        };

    public void Dispose() { }
}
