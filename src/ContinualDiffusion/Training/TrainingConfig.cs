using System.Text.Json.Serialization;
using ContinualDiffusion.Configuration;
using ContinualDiffusion.Methods;

namespace ContinualDiffusion.Training;

/// Training hyper-parameters (configs/train/defaults.json; a --config file and command-line options override).
/// Defaults here equal the shipped defaults file so a missing key means "the default".
public sealed record TrainingConfig
{
    /// "clora" (self-regularized, the paper's method), "lora" (λ = 0: plain sequential LoRA baseline) or another
    /// method of Methods/ContinualMethod ("textual-inversion", "custom-diffusion", "magmax", ...).
    public string Method { get; init; } = "clora";
    public int Steps { get; init; } = 400;
    public double LearningRate { get; init; } = 5e-4;
    /// The new token's embedding learns faster than the adapters: it starts random, far from any word.
    public double TokenLearningRate { get; init; } = 5e-3;
    public int Rank { get; init; } = 16;
    /// Weight of the self-regularization penalty. Large because |past delta| ⊙ current delta is tiny.
    public double Lambda { get; init; } = 1e8;
    public int BatchSize { get; init; } = 1;
    /// Training image side in pixels; null = the model's native size (UNet sample_size × VAE factor).
    public int? Resolution { get; init; }
    public long Seed { get; init; }
    public int CheckpointEvery { get; init; } = 100;
    public double MaxGradNorm { get; init; } = 1.0;
    public bool HorizontalFlip { get; init; } = true;
    /// Images with more pixels are refused before decoding (decompression-bomb protection).
    public long MaxImagePixels { get; init; } = 40_000_000;
    /// "{}" is replaced by the concept token; the class noun is deliberately absent ("a photo of <v3>").
    public IReadOnlyList<string> PromptTemplates { get; init; } = ["a photo of {}"];
    /// Learning-rate schedule over a task's steps (Training/LrScheduler: constant, constant_with_warmup, linear, cosine);
    /// null = constant. This and the next two are left out of the JSON at their defaults (Validated sets them so), so a
    /// config that does not use them serializes as before they existed: checkpoints and benchmark caches keyed on it
    /// stay valid.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? LrScheduler { get; init; }
    /// Warm-up steps of the schedule (not with constant); null = 0.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? LrWarmupSteps { get; init; }
    /// Batches whose gradients are summed into one optimizer step (a step sees batch_size × this many images, at one
    /// batch's memory); null = 1.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? GradientAccumulationSteps { get; init; }

    /// Min-SNR loss weighting with this γ (Training/MinSnrWeighting; diffusers' `--snr_gamma`, 5 is the paper's
    /// choice); null = the plain mean squared error. Left out of the JSON when null, as the three above.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? SnrGamma { get; init; }
    /// Offset noise (diffusers' and kohya's `--noise_offset`, typically 0.05-0.1): each sample's noise gets a
    /// per-channel constant of this scale, which lets the model learn darker and brighter images; null = none.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? NoiseOffset { get; init; }

    /// Aspect-ratio buckets (Imaging/AspectBuckets, kohya's `--enable_bucket`): each image is cropped to the bucket
    /// nearest its width:height (area at most resolution²) instead of a centred square; null = off.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? AspectBuckets { get; init; }
    /// The buckets' side step in pixels (kohya's `--bucket_reso_steps`); null = 64. The resolution must be a multiple.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? BucketStep { get; init; }

    public const int DefaultBucketStep = 64;

    /// Per-method defaults, e.g. `"methods": {"textual-inversion": {"steps": 5000}}`: applied by ForMethod when that
    /// method is chosen, before command-line options (which always win).
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, MethodDefaults>? Methods { get; init; }

    public static TrainingConfig Load(string path) => JsonConfig.Load<TrainingConfig>(path).Validated(path);

    /// configs/train/defaults.json next to the binaries: the record's defaults plus the per-method defaults for Stable
    /// Diffusion (Textual Inversion's 5,000 steps at 5e-3, Custom Diffusion's 250 steps at 1e-5).
    public static string DefaultsPath => Path.Combine(AppContext.BaseDirectory, "configs", "train", "defaults.json");

    /// The shipped defaults file when it is there (it ships with every build), else the record's defaults.
    public static TrainingConfig LoadDefaults() => File.Exists(DefaultsPath) ? Load(DefaultsPath) : new TrainingConfig();

    /// Rejects values that cannot train, naming the key (or option) and what is expected, and returns the config with
    /// lr_scheduler, lr_warmup_steps, gradient_accumulation_steps, noise_offset, aspect_buckets and bucket_step null where
    /// they hold their defaults.
    /// With `asOptions`, keys are named as the command-line options that set them (--rank, --lr, ...).
    public TrainingConfig Validated(string source, bool asOptions = false)
    {
        void Require(bool ok, string key, string expected)
        {
            if (ok) return;
            throw new ConfigException(asOptions ? $"{OptionName(key)} must be {expected}" : $"{source}: '{key}' must be {expected}");
        }
        Require(ContinualMethod.TryParse(Method, out _), "method", $"one of {string.Join(", ", Lora.AdapterMethods.AllNames)}");
        foreach (var (name, d) in Methods ?? new Dictionary<string, MethodDefaults>())
        {
            if (d is null) throw new ConfigException(asOptions ? $"config key 'methods.{name}' must be an object" : $"{source}: 'methods.{name}' must be an object of that method's defaults, e.g. {{ \"steps\": 500 }}");
            Require(ContinualMethod.TryParse(name, out var m), $"methods.{name}", $"named after a method ({string.Join(", ", Lora.AdapterMethods.AllNames)})");
            Require(d.Steps is null or > 0, $"methods.{name}.steps", "> 0");
            Require(d.LearningRate is null || m.TrainsUnet, $"methods.{name}.learning_rate", $"absent (method {name} trains only the token: set token_learning_rate)");
            Require(d.LearningRate is null || (d.LearningRate > 0 && double.IsFinite(d.LearningRate.Value)), $"methods.{name}.learning_rate", "a positive number");
            Require(d.TokenLearningRate is null || (d.TokenLearningRate >= 0 && double.IsFinite(d.TokenLearningRate.Value)), $"methods.{name}.token_learning_rate", "a number >= 0");
            Require(d.BatchSize is null or > 0, $"methods.{name}.batch_size", "> 0");
            Require(d.Rank is null || (d.Rank > 0 && m.LowRank), $"methods.{name}.rank", m.LowRank ? "> 0" : $"absent (method {name} has no low-rank factors)");
            Require(d.Lambda is null || (d.Lambda >= 0 && double.IsFinite(d.Lambda.Value) && m.UsesPenalty), $"methods.{name}.lambda", m.UsesPenalty ? ">= 0" : $"absent (method {name} has no penalty)");
        }
        Require(Steps > 0, "steps", "> 0");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), "learning_rate", "a positive number");
        Require(TokenLearningRate >= 0 && double.IsFinite(TokenLearningRate), "token_learning_rate", "a number >= 0");
        Require(Rank > 0, "rank", "> 0");
        Require(Lambda >= 0 && double.IsFinite(Lambda), "lambda", ">= 0");
        Require(BatchSize > 0, "batch_size", "> 0");
        Require(Resolution is null || (Resolution >= 8 && Resolution % 8 == 0), "resolution", "a multiple of 8");
        Require(CheckpointEvery >= 0, "checkpoint_every", ">= 0 (0 = never)");
        Require(MaxGradNorm > 0, "max_grad_norm", "> 0");
        Require(MaxImagePixels > 0, "max_image_pixels", "> 0");
        Require(PromptTemplates.Count > 0 && PromptTemplates.All(t => t.Contains("{}")), "prompt_templates", "a non-empty list of templates each containing {}");
        Require(LrScheduler is null || Training.LrScheduler.Names.Contains(LrScheduler), "lr_scheduler", $"one of {string.Join(", ", Training.LrScheduler.Names)}");
        Require(LrWarmupSteps is null or >= 0, "lr_warmup_steps", ">= 0");
        Require(LrWarmupSteps is null or 0 || Training.LrScheduler.HasWarmup(LrScheduler ?? Training.LrScheduler.Constant), "lr_warmup_steps",
            $"0 with the constant schedule (set {(asOptions ? "--lr-scheduler" : "lr_scheduler")} to constant_with_warmup, linear or cosine)");
        Require(GradientAccumulationSteps is null or > 0, "gradient_accumulation_steps", "> 0");
        Require(SnrGamma is null || (SnrGamma > 0 && double.IsFinite(SnrGamma.Value)), "snr_gamma", "a positive number (5 is usual)");
        Require(NoiseOffset is null || (NoiseOffset >= 0 && double.IsFinite(NoiseOffset.Value)), "noise_offset", "a number >= 0 (0.05-0.1 is usual)");
        Require(BucketStep is null || (BucketStep >= 8 && BucketStep % 8 == 0), "bucket_step", "a multiple of 8 (64 is usual)");
        return this with
        {
            // constant_with_warmup without warm-up steps is constant
            LrScheduler = LrScheduler == Training.LrScheduler.Constant || (LrScheduler == "constant_with_warmup" && LrWarmupSteps is null or 0) ? null : LrScheduler,
            LrWarmupSteps = LrWarmupSteps == 0 ? null : LrWarmupSteps,
            GradientAccumulationSteps = GradientAccumulationSteps == 1 ? null : GradientAccumulationSteps,
            NoiseOffset = NoiseOffset == 0 ? null : NoiseOffset,
            AspectBuckets = AspectBuckets == true ? true : null,
            BucketStep = AspectBuckets == true && BucketStep != DefaultBucketStep ? BucketStep : null, // a step without buckets does nothing
        };
    }

    private static string OptionName(string key) => key switch
    {
        "learning_rate" => "--lr",
        "token_learning_rate" => "--token-lr",
        _ when key.Contains('.') => $"config key '{key}'", // the methods section exists only in files
        _ => "--" + key.Replace('_', '-'),
    };

    /// λ actually applied: only C-LoRA has the penalty (the lora baseline is C-LoRA with it switched off).
    public double EffectiveLambda => ContinualMethod.TryParse(Method, out var m) && m.UsesPenalty ? Lambda : 0;

    /// The LoRA rank actually used: 0 for a method without low-rank factors. Not serialised (benchmark caches are keyed
    /// on the config's JSON, which predates this property).
    [JsonIgnore]
    public int EffectiveRank => ContinualMethod.TryParse(Method, out var m) && !m.LowRank ? 0 : Rank;

    /// This config with the given values set for every method: applied to the base values and removed from every
    /// method's defaults (command-line options always win over the `methods` section).
    public TrainingConfig Pinned(MethodDefaults values)
    {
        var c = this with
        {
            Steps = values.Steps ?? Steps,
            LearningRate = values.LearningRate ?? LearningRate,
            TokenLearningRate = values.TokenLearningRate ?? TokenLearningRate,
            Rank = values.Rank ?? Rank,
            Lambda = values.Lambda ?? Lambda,
            BatchSize = values.BatchSize ?? BatchSize,
        };
        if (Methods is null) return c;
        return c with
        {
            Methods = Methods.ToDictionary(kv => kv.Key, kv => kv.Value with
            {
                Steps = values.Steps is null ? kv.Value.Steps : null,
                LearningRate = values.LearningRate is null ? kv.Value.LearningRate : null,
                TokenLearningRate = values.TokenLearningRate is null ? kv.Value.TokenLearningRate : null,
                Rank = values.Rank is null ? kv.Value.Rank : null,
                Lambda = values.Lambda is null ? kv.Value.Lambda : null,
                BatchSize = values.BatchSize is null ? kv.Value.BatchSize : null,
            }),
        };
    }

    /// This config with `method`'s λ set to `lambda` (and, for clora, the base λ, which clora uses unless its own
    /// defaults name one): what `cdiff benchmark --lambda` does.
    public TrainingConfig WithMethodLambda(string method, double lambda)
    {
        var methods = Methods?.ToDictionary(kv => kv.Key, kv => kv.Value);
        if (methods is not null && methods.TryGetValue(method, out var d)) methods[method] = d with { Lambda = method == "clora" ? null : lambda };
        else if (method != "clora") (methods ??= [])[method] = new MethodDefaults { Lambda = lambda };
        return this with { Lambda = method == "clora" ? lambda : Lambda, Methods = methods };
    }

    /// This config with `method` chosen and its per-method defaults (the `methods` section) applied.
    public TrainingConfig ForMethod(string method)
    {
        var c = this with { Method = method };
        if (Methods is null || !Methods.TryGetValue(method, out var d) || d is null) return c;
        return c with
        {
            Steps = d.Steps ?? c.Steps,
            LearningRate = d.LearningRate ?? c.LearningRate,
            TokenLearningRate = d.TokenLearningRate ?? c.TokenLearningRate,
            Rank = d.Rank ?? c.Rank,
            Lambda = d.Lambda ?? c.Lambda,
            BatchSize = d.BatchSize ?? c.BatchSize,
        };
    }
}

/// One method's defaults in a training config's `methods` section; a missing key keeps the config's value.
public sealed record MethodDefaults
{
    public int? Steps { get; init; }
    public double? LearningRate { get; init; }
    public double? TokenLearningRate { get; init; }
    public int? Rank { get; init; }
    public double? Lambda { get; init; }
    public int? BatchSize { get; init; }
}
