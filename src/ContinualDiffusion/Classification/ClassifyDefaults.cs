namespace ContinualDiffusion.Classification;

/// Per-method training defaults for the small ViT (what `classify train` and the benchmark use when no option is
/// given). Chosen by measurement on the validation seeds (docs/results/classify); see the README.
public static class ClassifyDefaults
{
    public static ClassifyOptions ForMethod(string method, ClassifyOptions? start = null)
    {
        var o = start ?? new ClassifyOptions();
        return method switch
        {
            // The whole backbone trains: a LoRA-sized rate would wreck the pretrained features at once.
            "finetune" or "joint" => o with { LearningRate = 1e-4 },
            _ => o,
        };
    }
}
