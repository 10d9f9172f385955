namespace ContinualDiffusion.Classification.Methods;

/// The learners `cdiff classify train --method` offers, by name.
public static class ClassifyMethods
{
    public static readonly IReadOnlyList<string> Names = ["clora", "lora", "finetune", "ncm", "joint", "l2p", "coda-prompt"];

    /// The continual methods (all but `joint`, which learns every class in one task).
    public static bool IsContinual(string method) => method != "joint";

    public static ClassIncrementalLearner Create(string method, VisionTransformer backbone, ClassifyOptions options) => method switch
    {
        "clora" => new LoraLearner(backbone, options, penalised: true),
        "lora" => new LoraLearner(backbone, options, penalised: false),
        "finetune" => new FinetuneLearner(backbone, options),
        "joint" => new FinetuneLearner(backbone, options, joint: true),
        "ncm" => new NcmLearner(backbone, options),
        "l2p" => new L2pLearner(backbone, options),
        "coda-prompt" => new CodaPromptLearner(backbone, options),
        _ => throw new InputException($"--method {method}: expected one of {string.Join(", ", Names)}"),
    };
}
