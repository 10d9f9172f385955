namespace ContinualDiffusion.Evaluation;

/// The continual-learning summary of a score matrix R, where R[t][i] is concept i's score after task t
/// (t, i zero-based; entries with i > t are not defined and ignored).
public static class ContinualMetrics
{
    /// Final average: mean over all concepts of their score after the last task.
    public static double FinalAverage(double[][] r)
    {
        int last = r.Length - 1;
        return Enumerable.Range(0, last + 1).Average(i => r[last][i]);
    }

    /// Forgetting: mean over concepts i < T of (best score before the last task − score after the last task).
    public static double Forgetting(double[][] r)
    {
        int last = r.Length - 1;
        if (last == 0) return 0;
        return Enumerable.Range(0, last)
            .Average(i => Enumerable.Range(i, last - i).Max(t => r[t][i]) - r[last][i]);
    }

    /// The forgetting analogue for a lower-is-better score such as MMD²: mean over concepts i < T of
    /// (score after the last task − best, i.e. lowest, score before the last task). Positive means it got worse.
    public static double Increase(double[][] m)
    {
        int last = m.Length - 1;
        if (last == 0) return 0;
        return Enumerable.Range(0, last)
            .Average(i => m[last][i] - Enumerable.Range(i, last - i).Min(t => m[t][i]));
    }
}
