namespace ContinualDiffusion.Pretraining;

/// One optimisation step of a pretraining stage ("vae" or "unet").
public sealed record PretrainStep(string Stage, int Step, int TotalSteps, double Loss);
