namespace ContinualDiffusion.Interop.SingleFile;

/// What a user can tell about a single-file checkpoint that its weights cannot (`--original-config`,
/// `--prediction-type`).
public sealed record SingleFileOptions
{
    /// The original LDM yaml (v1-inference.yaml, v2-inference-v.yaml, ...); null infers everything from the weights.
    public string? OriginalConfigPath { get; init; }

    /// epsilon or v_prediction; overrides the yaml's `parameterization`. Required for SD 2.x files without a yaml.
    public string? PredictionType { get; init; }

    public bool IsEmpty => OriginalConfigPath is null && PredictionType is null;
}
