using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Schedulers;

/// scheduler/scheduler_config.json of a diffusers pipeline: the union of the keys diffusers 0.27.2 writes for
/// DDIM, DDPM, PNDM, Euler and DPM-Solver++ configs (plus the few later diffusers added), so any SD 1.x/2.x config loads.
///
/// Defaults are diffusers' defaults. Where the scheduler classes disagree on a default (clip_sample,
/// set_alpha_to_one, timestep_spacing, variance_type) the property is nullable: null means "not in the file", and the
/// scheduler that reads it applies its own class default, exactly as diffusers' from_config does for a key that
/// the file does not carry (DDIM: leading spacing, clip_sample true, set_alpha_to_one true; DPM++/Euler: linspace).
///
/// Load validates the keys every consumer uses (the noise schedule and prediction type). Keys that only one sampler
/// reads (thresholding, use_karras_sigmas, algorithm_type, ...) are validated by that sampler's constructor, so a
/// config written for a sampler we cannot run still trains and samples with the others (as diffusers ignores keys
/// a scheduler class does not take).
public sealed record SchedulerConfig
{
    // Noise schedule (all schedulers).
    public int NumTrainTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 0.0001;
    public double BetaEnd { get; init; } = 0.02;
    public string BetaSchedule { get; init; } = "linear";
    public double[]? TrainedBetas { get; init; }
    public bool RescaleBetasZeroSnr { get; init; }
    public string PredictionType { get; init; } = "epsilon";

    // Timestep placement (all samplers).
    public int StepsOffset { get; init; }
    public string? TimestepSpacing { get; init; }

    // DDIM / DDPM / PNDM.
    public bool? ClipSample { get; init; }
    public double ClipSampleRange { get; init; } = 1.0;
    public bool? SetAlphaToOne { get; init; }
    public bool SkipPrkSteps { get; init; }
    public string? VarianceType { get; init; }

    // Dynamic thresholding (DDIM / DDPM / DPM-Solver); only false is implemented.
    public bool Thresholding { get; init; }
    public double DynamicThresholdingRatio { get; init; } = 0.995;
    public double SampleMaxValue { get; init; } = 1.0;

    // DPM-Solver multistep.
    public int SolverOrder { get; init; } = 2;
    public string AlgorithmType { get; init; } = "dpmsolver++";
    public string SolverType { get; init; } = "midpoint";
    public bool LowerOrderFinal { get; init; } = true;
    public bool EulerAtFinal { get; init; }
    public bool UseLuLambdas { get; init; }
    public string FinalSigmasType { get; init; } = "zero";
    public double LambdaMinClipped { get; init; } = double.NegativeInfinity;

    // Euler discrete (use_karras_sigmas is shared with DPM-Solver).
    public bool UseKarrasSigmas { get; init; }
    public string InterpolationType { get; init; } = "linear";
    public double? SigmaMin { get; init; }
    public double? SigmaMax { get; init; }
    public string TimestepType { get; init; } = "discrete";

    // Written by diffusers releases after 0.27 (Euler / DPM-Solver); only their defaults are implemented.
    public bool UseExponentialSigmas { get; init; }
    public bool UseBetaSigmas { get; init; }
    public bool UseFlowSigmas { get; init; }
    public double FlowShift { get; init; } = 1.0;

    /// Where the config came from, for error messages (the file path when loaded from disk).
    [JsonIgnore] public string Source { get; init; } = "<scheduler config>";

    /// diffusers' `_class_name` (e.g. "DDIMScheduler"), which picks the default sampler; null when built in code.
    [JsonIgnore] public string? ClassName { get; init; }

    public static readonly IReadOnlyList<string> BetaSchedules = ["linear", "scaled_linear", "squaredcos_cap_v2"];
    public static readonly IReadOnlyList<string> PredictionTypes = ["epsilon", "v_prediction", "sample"];
    public static readonly IReadOnlyList<string> TimestepSpacings = ["leading", "trailing", "linspace"];

    public static SchedulerConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: config file not found");
        return Parse(File.ReadAllText(path), path);
    }

    /// Parses the text of a scheduler_config.json; `source` names it in error messages.
    public static SchedulerConfig Parse(string json, string source)
    {
        var text = PythonJson.QuoteNonFiniteNumbers(json);
        var config = JsonConfig.Parse<SchedulerConfig>(text, source) with { Source = source, ClassName = ClassNameOf(text, source) };
        config.Validate();
        return config;
    }

    /// The `_class_name` of a diffusers config file (JsonConfig drops `_` keys, so it is read on its own).
    public static string? ReadClassName(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: config file not found");
        return ClassNameOf(PythonJson.QuoteNonFiniteNumbers(File.ReadAllText(path)), path);
    }

    private static string? ClassNameOf(string json, string source)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json, documentOptions: new() { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (System.Text.Json.JsonException e) { throw new ConfigException($"{source}: not valid JSON ({e.Message})"); }
        if (node is not JsonObject obj || !obj.TryGetPropertyValue("_class_name", out var value) || value is null) return null;
        return value.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? value.GetValue<string>()
            : throw new ConfigException($"{source}: key '_class_name': expected a string");
    }

    /// Checks the keys shared by training and every sampler; throws ConfigException naming the file and key.
    public void Validate()
    {
        if (NumTrainTimesteps < 2) Fail("num_train_timesteps", $"{NumTrainTimesteps} (expected at least 2)");
        if (TrainedBetas is { } trained)
        {
            // diffusers takes trained_betas over beta_schedule; a length mismatch would index out of range later.
            if (trained.Length != NumTrainTimesteps) Fail("trained_betas", $"{trained.Length} values (expected num_train_timesteps = {NumTrainTimesteps})");
            if (trained.Any(b => !(b > 0 && b < 1))) Fail("trained_betas", "every beta must lie in (0, 1)");
        }
        else
        {
            RequireOneOf("beta_schedule", BetaSchedule, BetaSchedules);
            if (BetaSchedule != "squaredcos_cap_v2" && !(BetaStart > 0 && BetaStart <= BetaEnd && BetaEnd < 1))
                Fail("beta_start", $"beta_start {BetaStart} / beta_end {BetaEnd} (expected 0 < beta_start <= beta_end < 1)");
        }
        if (RescaleBetasZeroSnr) Fail("rescale_betas_zero_snr", "true is not supported (expected false)");
        RequireOneOf("prediction_type", PredictionType, PredictionTypes);
        if (StepsOffset < 0) Fail("steps_offset", $"{StepsOffset} (expected >= 0)");
        if (TimestepSpacing is not null) RequireOneOf("timestep_spacing", TimestepSpacing, TimestepSpacings);
    }

    /// Throws the ConfigException every config check uses: "<file>: key '<key>': <what>".
    [DoesNotReturn]
    public void Fail(string key, string what) => throw new ConfigException($"{Source}: key '{key}': {what}");

    public void RequireOneOf(string key, string value, IReadOnlyList<string> allowed)
    {
        if (!allowed.Contains(value, StringComparer.Ordinal))
            Fail(key, $"'{value}' is not supported (expected {string.Join(", ", allowed)})");
    }

    /// For sampler-specific keys: only the diffusers default is implemented.
    public void RequireDefault<TValue>(string key, TValue value, TValue expected)
    {
        if (!EqualityComparer<TValue>.Default.Equals(value, expected))
            Fail(key, $"{Show(value)} is not supported (only {Show(expected)})");
    }

    private static string Show<TValue>(TValue v) => v switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        string s => $"'{s}'",
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "null",
    };
}
