namespace ContinualDiffusion.Classification;

/// How one task is trained (every method reads the fields that apply to it). Defaults are this project's choices
/// for the small ViT on 28×28 images, measured in docs/results/classify (not the papers' ViT-B/16 settings).
public sealed record ClassifyOptions
{
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 64;

    /// AdamW rate of what the method trains (the LoRA factors, the prompts, or the whole backbone for finetune);
    /// the head's new rows train at <see cref="HeadLearningRate"/>.
    public double LearningRate { get; init; } = 1e-3;
    public double HeadLearningRate { get; init; } = 1e-2;
    public double WeightDecay { get; init; } = 0.0;

    /// LoRA rank on every block's fused qkv projection (clora, lora).
    public int Rank { get; init; } = 8;

    /// C-LoRA's penalty weight (clora; lora is λ = 0). 100: the best of λ ∈ {1, 100, 1e4, 1e6} on validation seed 100
    /// (5 tasks; A_N 41.0%, 43.3%, 39.1%, 35.5%), never on the reported seeds.
    public double Lambda { get; init; } = 100.0;

    /// Tokens per prompt, Lp (l2p, coda-prompt). Null: each method's paper value, 5 for l2p (Wang et al. 2022) and 8
    /// for coda-prompt (Smith et al. 2023). coda-prompt needs it even (half prefix keys, half prefix values).
    public int? PromptLength { get; init; }

    /// L2P's prompt pool size M (l2p): prompts and keys shared by every task. The paper's 10.
    public int PoolSize { get; init; } = 10;

    /// L2P's prompts chosen per image, N (l2p): the N keys of highest cosine similarity to the query. The paper's 5.
    public int TopN { get; init; } = 5;

    /// L2P's surrogate-loss weight λ (l2p): the loss adds λ Σ over the selected keys of (1 − cos(query, key)), averaged
    /// over the batch. 0.5 is this project's choice (the official L2P config uses 1.0, the l2p-pytorch port 0.1).
    public double PullWeight { get; init; } = 0.5;

    /// CODA-Prompt's prompt components M in all, per prompted block (coda-prompt): each of the
    /// <see cref="ExpectedTasks"/> tasks adds Components / ExpectedTasks of them. The paper's 100.
    public int Components { get; init; } = 100;

    /// Tasks coda-prompt divides its <see cref="Components"/> among (it must be a divisor of them); a task beyond
    /// this many is refused. 5 matches the benchmark's default task split.
    public int ExpectedTasks { get; init; } = 5;

    public long Seed { get; init; }

    /// The first value outside its range, as "key: what was expected", or null when every value is usable.
    public string? Problem()
    {
        static bool Rate(double x) => x > 0 && double.IsFinite(x);
        static bool Weight(double x) => x >= 0 && double.IsFinite(x);
        if (Epochs < 1) return $"epochs is {Epochs}, expected at least 1";
        if (BatchSize < 1) return $"batch_size is {BatchSize}, expected at least 1";
        if (!Rate(LearningRate)) return $"learning_rate is {LearningRate}, expected a positive finite number";
        if (!Rate(HeadLearningRate)) return $"head_learning_rate is {HeadLearningRate}, expected a positive finite number";
        if (!Weight(WeightDecay)) return $"weight_decay is {WeightDecay}, expected a finite number ≥ 0";
        if (Rank < 1) return $"rank is {Rank}, expected at least 1";
        if (!Weight(Lambda)) return $"lambda is {Lambda}, expected a finite number ≥ 0";
        if (PromptLength is < 1) return $"prompt_length is {PromptLength}, expected at least 1";
        if (PoolSize < 1) return $"pool_size is {PoolSize}, expected at least 1";
        if (TopN < 1 || TopN > PoolSize) return $"top_n is {TopN}, expected 1..pool_size ({PoolSize})";
        if (!Weight(PullWeight)) return $"pull_weight is {PullWeight}, expected a finite number ≥ 0";
        if (Components < 1) return $"components is {Components}, expected at least 1";
        if (ExpectedTasks < 1) return $"expected_tasks is {ExpectedTasks}, expected at least 1";
        return null;
    }
}
