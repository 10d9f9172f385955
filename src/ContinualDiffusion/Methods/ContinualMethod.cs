using ContinualDiffusion.Lora;

namespace ContinualDiffusion.Methods;

/// How the earlier tasks' deltas combine into the weight a new task trains on and the weight sampling uses.
public enum PastComposition
{
    /// W = W0 + Σ_t Δ_t (C-LoRA, LoRA, ortho-init, Custom Diffusion trained sequentially, textual inversion's empty Δ).
    Sum,
    /// W = W0 + M_T with M_t = the element of larger magnitude of M_{t-1} and Δ_t (MagMax).
    MagMax,
    /// Each concept trains from W0 alone; sampling uses Custom Diffusion's closed-form merge of all concepts so far.
    ClosedFormMerge,
}

/// The regulariser a method adds to the diffusion loss, weighted by λ.
public enum PenaltyKind
{
    None,
    /// C-LoRA's ‖|P| ⊙ A·B‖² (Lora/SelfRegularizer): stay off the weight elements the past changed.
    SelfRegularization,
    /// cdiff's text anchor (Lora/TextAnchor): do not change what the key/value projections output for the past
    /// concepts' prompts and for generic captions.
    TextAnchor,
}

/// What one `--method` trains and how its tasks combine. The method is fixed per run (the manifest records it).
public sealed record ContinualMethod(AdapterMethod Id, string Summary, PenaltyKind Penalty, bool OrthogonalInit, PastComposition Composition)
{
    public static readonly ContinualMethod CLora = new(AdapterMethod.CLora,
        "C-LoRA (Smith et al., TMLR 2024): a low-rank adapter per task on the summed past, self-regularised off the weights the past changed",
        PenaltyKind.SelfRegularization, OrthogonalInit: false, PastComposition.Sum);
    public static readonly ContinualMethod Lora = new(AdapterMethod.Lora,
        "sequential LoRA (merge-and-init): a fresh low-rank adapter per task on the summed past, no penalty",
        PenaltyKind.None, OrthogonalInit: false, PastComposition.Sum);
    public static readonly ContinualMethod TextualInversion = new(AdapterMethod.TextualInversion,
        "Textual Inversion (Gal et al., ICLR 2023): only the new token's embedding trains; the UNet is untouched",
        PenaltyKind.None, OrthogonalInit: false, PastComposition.Sum);
    public static readonly ContinualMethod CustomDiffusion = new(AdapterMethod.CustomDiffusion,
        "Custom Diffusion (Kumari et al., CVPR 2023) trained sequentially: the full cross-attention key/value weights and the token; each task continues from the weights the previous tasks left",
        PenaltyKind.None, OrthogonalInit: false, PastComposition.Sum);
    public static readonly ContinualMethod CustomDiffusionMerge = new(AdapterMethod.CustomDiffusionMerge,
        "Custom Diffusion with its closed-form merge: each concept's key/value weights train from the base model; after every task all concepts so far are merged by constrained least squares on text features",
        PenaltyKind.None, OrthogonalInit: false, PastComposition.ClosedFormMerge);
    public static readonly ContinualMethod MagMax = new(AdapterMethod.MagMax,
        "MagMax (Staniszewski et al. 2024): a fresh LoRA per task on the merged past; per weight element the merge keeps whichever of the past and the new delta is larger in magnitude",
        PenaltyKind.None, OrthogonalInit: false, PastComposition.MagMax);
    public static readonly ContinualMethod OrthoInit = new(AdapterMethod.OrthoInit,
        "ortho-init (Staniszewski et al. 2024): sequential LoRA whose new input-side factor starts orthogonal to the row space of the past delta",
        PenaltyKind.None, OrthogonalInit: true, PastComposition.Sum);

    public static readonly ContinualMethod AnchoredLora = new(AdapterMethod.AnchoredLora,
        "anchored LoRA (cdiff's own): sequential LoRA whose penalty keeps the key/value outputs for the past concepts' prompts and for generic captions unchanged (text features only, no stored image)",
        PenaltyKind.TextAnchor, OrthogonalInit: false, PastComposition.Sum);

    public static IReadOnlyList<ContinualMethod> All { get; } = [CLora, Lora, TextualInversion, CustomDiffusion, CustomDiffusionMerge, MagMax, OrthoInit, AnchoredLora];

    /// Has a penalty weighted by λ (`--lambda` applies).
    public bool UsesPenalty => Penalty != PenaltyKind.None;

    /// The name on the command line, in manifests and adapter files ("clora", "custom-diffusion", ...).
    public string Name => Id.Name();

    /// Trains low-rank factors A·B per layer (`--rank` applies).
    public bool LowRank => Id.IsLowRank();

    /// Trains a dense [out, in] delta per layer.
    public bool Dense => Id.IsDense();

    /// Trains anything in the UNet (`--lr` applies); textual inversion trains the token only.
    public bool TrainsUnet => LowRank || Dense;

    /// Whether a task trains on top of the earlier tasks' composed weights (false: from the base model alone).
    public bool TrainsOnPast => Composition != PastComposition.ClosedFormMerge;

    public static ContinualMethod Of(AdapterMethod id) => All.First(m => m.Id == id);

    public static bool TryParse(string? name, out ContinualMethod method)
    {
        method = CLora;
        if (!AdapterMethods.TryParse(name, out var id)) return false;
        method = Of(id);
        return true;
    }

    /// Parses a method name; unknown names are an InputException naming `option` and the known methods.
    public static ContinualMethod Parse(string? name, string option = "--method") => TryParse(name, out var m)
        ? m
        : throw new InputException($"{option}: unknown method '{name}'; expected one of {string.Join(", ", AdapterMethods.AllNames)}");

    /// Why a training option (as on the command line: "--rank", "--lambda", "--lr") does not apply to this method,
    /// or null when it does. Giving such an option is an error that names both.
    public string? WhyNotApplicable(string option) => option switch
    {
        "--rank" when !LowRank => $"--rank does not apply to --method {Name}: it trains {(Dense ? "dense key/value weights" : "no UNet weights")}, not low-rank factors",
        "--lambda" when !UsesPenalty => $"--lambda does not apply to --method {Name}: it has no penalty (clora and anchored-lora have one)",
        "--lr" when !TrainsUnet => $"--lr does not apply to --method {Name}: it trains only the token embedding (set --token-lr)",
        _ => null,
    };
}
