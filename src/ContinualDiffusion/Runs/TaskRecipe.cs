using System.Text.Json.Serialization;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Runs;

/// How a task was trained, beyond what its manifest entry's own keys (method, rank, λ, steps, learning rate, seed)
/// say: recorded at commit so that a run says how to reproduce each task (kohya writes the same into its `ss_*`
/// metadata), shown by `cdiff status` and carried into single-task kohya exports. Absent in manifests written before
/// it existed; every value is the effective one (per-method defaults applied, the model's native resolution
/// resolved, the schedule's defaults spelled out).
public sealed record TaskRecipe
{
    public required double TokenLearningRate { get; init; }
    public required int BatchSize { get; init; }
    public required int GradientAccumulationSteps { get; init; }
    public required string LrScheduler { get; init; }
    public required int LrWarmupSteps { get; init; }
    /// Training image side in pixels.
    public required int Resolution { get; init; }
    /// Min-SNR γ; absent when the loss was the plain mean squared error.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? SnrGamma { get; init; }
    public required double NoiseOffset { get; init; }
    public required double MaxGradNorm { get; init; }
    public required bool HorizontalFlip { get; init; }
    public required IReadOnlyList<string> PromptTemplates { get; init; }
    /// Images trained with their own caption file instead of the prompt templates.
    public required int CaptionedImages { get; init; }
    /// The frozen weights' dtype (--dtype): fp32, bf16 or fp16.
    public required string Dtype { get; init; }
    public required bool VaeFp32 { get; init; }
    public required bool GradientCheckpointing { get; init; }
    /// The aspect buckets' side step (Imaging/AspectBuckets); absent when images were centre-cropped squares.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? BucketStep { get; init; }

    /// The recipe of a task trained with `config` (validated), at `resolution`, with `captioned` captioned images.
    public static TaskRecipe Of(TrainingConfig config, int resolution, int captioned, ComputePrecision? precision, bool gradientCheckpointing) => new()
    {
        TokenLearningRate = config.TokenLearningRate,
        BatchSize = config.BatchSize,
        GradientAccumulationSteps = config.GradientAccumulationSteps ?? 1,
        LrScheduler = config.LrScheduler ?? Training.LrScheduler.Constant,
        LrWarmupSteps = config.LrWarmupSteps ?? 0,
        Resolution = resolution,
        SnrGamma = config.SnrGamma,
        NoiseOffset = config.NoiseOffset ?? 0,
        MaxGradNorm = config.MaxGradNorm,
        HorizontalFlip = config.HorizontalFlip,
        PromptTemplates = config.PromptTemplates,
        CaptionedImages = captioned,
        Dtype = (precision ?? ComputePrecision.Float32).Name,
        VaeFp32 = precision?.VaeFp32 ?? false,
        GradientCheckpointing = gradientCheckpointing,
        BucketStep = config.AspectBuckets == true ? config.BucketStep ?? TrainingConfig.DefaultBucketStep : null,
    };

    /// What the JSON schema cannot say, for the task entry `where` of `imageCount` images.
    public void Validate(string where, int imageCount)
    {
        void Require(bool ok, string key, string expected)
        {
            if (!ok) throw new InputException($"{where}: training.{key} must be {expected}");
        }
        Require(TokenLearningRate >= 0 && double.IsFinite(TokenLearningRate), "token_learning_rate", "a number >= 0");
        Require(BatchSize > 0, "batch_size", "> 0");
        Require(GradientAccumulationSteps > 0, "gradient_accumulation_steps", "> 0");
        Require(LrScheduler is not null && Training.LrScheduler.Names.Contains(LrScheduler), "lr_scheduler", $"one of {string.Join(", ", Training.LrScheduler.Names)}");
        Require(LrWarmupSteps >= 0, "lr_warmup_steps", ">= 0");
        Require(Resolution >= 8 && Resolution <= 65536 && Resolution % 8 == 0, "resolution", "a multiple of 8 up to 65536");
        Require(SnrGamma is null || (SnrGamma > 0 && double.IsFinite(SnrGamma.Value)), "snr_gamma", "a positive number");
        Require(NoiseOffset >= 0 && double.IsFinite(NoiseOffset), "noise_offset", "a number >= 0");
        Require(MaxGradNorm > 0 && double.IsFinite(MaxGradNorm), "max_grad_norm", "> 0");
        Require(PromptTemplates is { Count: > 0 } && PromptTemplates.All(p => p is not null && p.Contains("{}")), "prompt_templates", "a non-empty list of templates each containing {}");
        Require(CaptionedImages >= 0 && CaptionedImages <= imageCount, "captioned_images", $"from 0 to image_count ({imageCount})");
        Require(BucketStep is null || (BucketStep >= 8 && BucketStep % 8 == 0 && Resolution % BucketStep == 0), "bucket_step", $"a multiple of 8 that divides the resolution ({Resolution})");
        Require(Dtype is not null && ComputePrecision.DTypeNames.Contains(Dtype), "dtype", $"one of {string.Join(", ", ComputePrecision.DTypeNames)}");
    }
}
