using ContinualDiffusion.Runtime;
using static TorchSharp.torch;

namespace ContinualDiffusion.Schedulers;

/// diffusers' DPMSolverMultistepScheduler (0.27.2) as DPM-Solver++(2M): algorithm_type dpmsolver++, solver_order
/// 1 or 2, solver_type midpoint, no Karras / Lu sigmas, final sigma zero or sigma_min. Integer timesteps; sigmas
/// are the training sigmas at those timesteps plus the final one. The model output is first converted to an x0
/// prediction; the second-order update uses the previous step's x0 too, so the scheduler keeps it between steps
/// (reset by SetTimesteps). The first step, and the last one when final_sigmas_type is zero (or fewer than 15 steps
/// with lower_order_final, or euler_at_final), are first order.
public sealed class DpmSolverMultistepScheduler : IScheduler
{
    public const string SamplerName = "dpm++";

    private readonly float[] _alphasCumprod;
    private readonly float[] _trainSigmas;
    private readonly string _spacing;
    private readonly int _order;
    private Timestep[] _timesteps = [];
    private float[] _sigmas = [];
    private Tensor?[] _modelOutputs;
    private int _lowerOrderNums;
    private int? _stepIndex;

    public DpmSolverMultistepScheduler(SchedulerConfig config)
    {
        config.Validate();
        ValidateImplemented(config);
        Config = config;
        Schedule = new NoiseSchedule(config);
        _alphasCumprod = [.. Schedule.AlphasCumprod];
        _trainSigmas = TrainSigmas.From(_alphasCumprod);
        _spacing = config.TimestepSpacing ?? "linspace";
        _order = config.SolverOrder;
        _modelOutputs = new Tensor?[_order];
    }

    private static void ValidateImplemented(SchedulerConfig c)
    {
        c.RequireOneOf("algorithm_type", c.AlgorithmType, ["dpmsolver++"]);
        c.RequireOneOf("solver_type", c.SolverType, ["midpoint"]);
        if (c.SolverOrder is not (1 or 2)) c.Fail("solver_order", $"{c.SolverOrder} is not supported (expected 1 or 2)");
        c.RequireOneOf("final_sigmas_type", c.FinalSigmasType, ["zero", "sigma_min"]);
        c.RequireDefault("thresholding", c.Thresholding, false);
        c.RequireDefault("use_karras_sigmas", c.UseKarrasSigmas, false);
        c.RequireDefault("use_lu_lambdas", c.UseLuLambdas, false);
        c.RequireDefault("use_exponential_sigmas", c.UseExponentialSigmas, false);
        c.RequireDefault("use_beta_sigmas", c.UseBetaSigmas, false);
        c.RequireDefault("use_flow_sigmas", c.UseFlowSigmas, false);
        // learned variances mean a UNet with twice the output channels; SD 1.x/2.x UNets have none.
        if (c.VarianceType is "learned" or "learned_range") c.Fail("variance_type", $"'{c.VarianceType}' is not supported (expected null)");
    }

    public string Name => SamplerName;
    public SchedulerConfig Config { get; }
    public NoiseSchedule Schedule { get; }
    public int NumInferenceSteps { get; private set; }
    public IReadOnlyList<Timestep> Timesteps => _timesteps;
    public double InitNoiseSigma => 1.0;

    /// sigmas[k] for timestep k, plus the final sigma (0 or sigma_min): NumInferenceSteps + 1 values.
    public IReadOnlyList<float> Sigmas => _sigmas;

    public void SetTimesteps(int numInferenceSteps)
    {
        int train = Config.NumTrainTimesteps;
        // N + 1 grid points over the training range: at N = train the rounded grid would repeat timesteps.
        if (numInferenceSteps < 1 || numInferenceSteps >= train)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"{numInferenceSteps} steps (expected 1..{train - 1})");
        long[] timesteps = ComputeTimesteps(numInferenceSteps, LastTimestep());
        _timesteps = timesteps.Select(Timestep.Integer).ToArray();
        // np.interp at integer timesteps returns the training sigma itself.
        _sigmas = [.. timesteps.Select(t => (float)NumpyCompat.Interp(t, _trainSigmas)), FinalSigma()];
        NumInferenceSteps = numInferenceSteps;
        ResetState();
    }

    /// num_train_timesteps minus the number of timesteps whose lambda = log(alpha) - log(sigma) falls below
    /// lambda_min_clipped (diffusers clips them for cosine schedules; -inf by default clips none).
    private int LastTimestep()
    {
        int clipped = 0;
        // lambda_t decreases with t; searchsorted(flip(lambda), min) counts the values below min.
        foreach (var acp in _alphasCumprod)
        {
            float lambda = MathF.Log(MathF.Sqrt(acp)) - MathF.Log(MathF.Sqrt(1f - acp));
            if (lambda < Config.LambdaMinClipped) clipped++;
        }
        return Config.NumTrainTimesteps - clipped;
    }

    private long[] ComputeTimesteps(int steps, int last)
    {
        switch (_spacing)
        {
            case "linspace":
                // np.linspace(0, last - 1, N + 1).round()[::-1][:-1]
                return NumpyCompat.Linspace(0, last - 1, steps + 1).Reverse().Take(steps).Select(v => (long)NumpyCompat.Round(v)).ToArray();
            case "leading":
            {
                int ratio = last / (steps + 1);
                return Enumerable.Range(1, steps).Reverse().Select(i => (long)i * ratio + Config.StepsOffset).ToArray();
            }
            case "trailing":
                return NumpyCompat.Arange(last, 0, -(double)Config.NumTrainTimesteps / steps).Select(v => (long)NumpyCompat.Round(v) - 1).ToArray();
            default:
                throw new InvalidOperationException($"timestep_spacing '{_spacing}' is not supported");
        }
    }

    private float FinalSigma() => Config.FinalSigmasType == "zero" ? 0f : _trainSigmas[0];

    /// DPM-Solver works on unscaled samples; returns a new handle to the same storage.
    public Tensor ScaleModelInput(Tensor sample, Timestep timestep) => sample.alias();

    public Tensor Step(Tensor modelOutput, Timestep timestep, Tensor sample)
    {
        if (NumInferenceSteps == 0) throw new InvalidOperationException("call SetTimesteps before Step");
        int i = _stepIndex ??= StartIndex(timestep);
        if (i >= NumInferenceSteps) throw new InvalidOperationException($"all {NumInferenceSteps} steps are done; call SetTimesteps to start a new trajectory");
        int n = NumInferenceSteps;
        bool lowerOrderFinal = i == n - 1 &&
            (Config.EulerAtFinal || (Config.LowerOrderFinal && n < 15) || Config.FinalSigmasType == "zero");

        using var scope = NewDisposeScope();
        var x0 = ConvertModelOutput(modelOutput, sample, _sigmas[i]);
        Remember(x0);

        var sample32 = sample.to(ScalarType.Float32);
        var prev = _order == 1 || _lowerOrderNums < 1 || lowerOrderFinal
            ? FirstOrderUpdate(x0, sample32, i)
            : SecondOrderUpdate(sample32, i);
        if (_lowerOrderNums < _order) _lowerOrderNums++;
        _stepIndex = i + 1;
        return prev.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }

    /// diffusers' _init_step_index: the first Step locates its timestep in the schedule (last index if absent).
    private int StartIndex(Timestep timestep)
    {
        int index = TrainSigmas.IndexOf(_timesteps, timestep);
        return index >= 0 ? index : _timesteps.Length - 1;
    }

    /// DPM-Solver++ works with data (x0) predictions.
    private Tensor ConvertModelOutput(Tensor modelOutput, Tensor sample, float sigma)
    {
        var (alphaT, sigmaT) = TrainSigmas.ToAlphaSigma(sigma);
        return Config.PredictionType switch
        {
            "epsilon" => (sample - modelOutput.Times(sigmaT)).DividedBy(alphaT),
            "sample" => modelOutput.alias(),
            "v_prediction" => sample.Times(alphaT) - modelOutput.Times(sigmaT),
            _ => throw new InvalidOperationException($"prediction_type '{Config.PredictionType}' is not supported"),
        };
    }

    /// Shifts the history (model_outputs[i] = model_outputs[i + 1]) and keeps x0 beyond the caller's dispose scope.
    private void Remember(Tensor x0)
    {
        _modelOutputs[0]?.Dispose();
        for (int k = 0; k < _order - 1; k++) _modelOutputs[k] = _modelOutputs[k + 1];
        _modelOutputs[_order - 1] = x0.alias().DetachFromDisposeScope();
    }

    /// x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D0, with h = lambda_t - lambda_s (float32 scalars).
    private Tensor FirstOrderUpdate(Tensor x0, Tensor sample, int i)
    {
        var (alphaT, sigmaT) = TrainSigmas.ToAlphaSigma(_sigmas[i + 1]);
        var (alphaS, sigmaS) = TrainSigmas.ToAlphaSigma(_sigmas[i]);
        float h = Lambda(alphaT, sigmaT) - Lambda(alphaS, sigmaS);
        // With a final sigma of 0: lambda_t = +inf, exp(-h) = 0, x_t = D0.
        return sample.Times(sigmaT / sigmaS) - x0.Times(alphaT * (MathF.Exp(-h) - 1f));
    }

    /// Midpoint DPM-Solver++(2M): D1 = (m0 - m1) / r0 with r0 = h_0 / h.
    private Tensor SecondOrderUpdate(Tensor sample, int i)
    {
        var (alphaT, sigmaT) = TrainSigmas.ToAlphaSigma(_sigmas[i + 1]);
        var (alphaS0, sigmaS0) = TrainSigmas.ToAlphaSigma(_sigmas[i]);
        var (alphaS1, sigmaS1) = TrainSigmas.ToAlphaSigma(_sigmas[i - 1]);
        float lambdaT = Lambda(alphaT, sigmaT), lambdaS0 = Lambda(alphaS0, sigmaS0), lambdaS1 = Lambda(alphaS1, sigmaS1);
        var m0 = _modelOutputs[_order - 1]!;
        var m1 = _modelOutputs[_order - 2]!;
        float h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1;
        float r0 = h0 / h;
        var d1 = (m0 - m1).Times(1f / r0);
        float expTerm = alphaT * (MathF.Exp(-h) - 1f);
        return sample.Times(sigmaT / sigmaS0) - m0.Times(expTerm) - d1.Times(0.5f * expTerm);
    }

    private static float Lambda(float alpha, float sigma) => MathF.Log(alpha) - MathF.Log(sigma);

    private void ResetState()
    {
        for (int k = 0; k < _modelOutputs.Length; k++) { _modelOutputs[k]?.Dispose(); _modelOutputs[k] = null; }
        _lowerOrderNums = 0;
        _stepIndex = null;
    }

    public void Dispose() => ResetState();
}
