namespace ContinualDiffusion.Training;

/// Linear warm-up then cosine decay to a tenth: from-scratch training with Adam at a high rate needs the
/// warm-up to avoid an early blow-up, and the decay is what makes a short run end on a good model.
internal static class LearningRateSchedule
{
    public static double Scale(int step, int totalSteps)
    {
        int warmup = Math.Max(1, Math.Min(100, totalSteps / 10));
        if (step <= warmup) return (double)step / warmup;
        double progress = (double)(step - warmup) / Math.Max(1, totalSteps - warmup);
        return 0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
