using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Training;

/// Training hyper-parameters (configs/train/defaults.json; a --config file and command-line options override).
/// Defaults here equal the shipped defaults file so a missing key means "the default".
public sealed record TrainingConfig
{
    /// "clora" (self-regularized, the paper's method) or "lora" (λ = 0: plain sequential LoRA baseline).
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

    public static TrainingConfig Load(string path) => JsonConfig.Load<TrainingConfig>(path).Validated(path);

    /// Rejects values that cannot train, naming the key (or option) and what is expected.
    /// With `asOptions`, keys are named as the command-line options that set them (--rank, --lr, ...).
    public TrainingConfig Validated(string source, bool asOptions = false)
    {
        void Require(bool ok, string key, string expected)
        {
            if (ok) return;
            throw new ConfigException(asOptions ? $"{OptionName(key)} must be {expected}" : $"{source}: '{key}' must be {expected}");
        }
        Require(Method is "clora" or "lora", "method", "'clora' or 'lora'");
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
        return this;
    }

    private static string OptionName(string key) => key switch
    {
        "learning_rate" => "--lr",
        "token_learning_rate" => "--token-lr",
        _ => "--" + key.Replace('_', '-'),
    };

    /// λ actually applied: the lora baseline is C-LoRA with the penalty switched off.
    public double EffectiveLambda => Method == "lora" ? 0 : Lambda;
}
