namespace ContinualDiffusion.Interop.Export;

/// `--tasks`: which finished tasks an export covers. Always tasks 1..t: each task's adapter was trained on top of the
/// sum of the earlier ones (and C-LoRA's penalty kept it off their weights), so a later task without the earlier ones
/// is not a model anyone trained or sampled.
public static class TaskSelection
{
    /// The last task t of `--tasks` ("t" or "1..t"); null or empty means every finished task. Throws InputException
    /// (one line, naming the option) for text that is not such a range, a range not starting at 1, or a task the run
    /// has not finished.
    public static int LastTask(string? text, int finishedTasks)
    {
        if (finishedTasks < 1) throw new InputException("the run has no finished task to export; train task 1 first");
        if (string.IsNullOrWhiteSpace(text)) return finishedTasks;
        var s = text.Trim();
        int last;
        int dots = s.IndexOf("..", StringComparison.Ordinal);
        if (dots >= 0)
        {
            if (!TryTask(s[..dots], out int first) || !TryTask(s[(dots + 2)..], out last))
                throw new InputException($"--tasks '{text}': expected t or 1..t (e.g. --tasks 1..3)");
            if (first != 1)
                throw new InputException($"--tasks '{text}': an export starts at task 1 (every task was trained on top of the earlier tasks' deltas); use --tasks 1..{last}");
            if (last < first) throw new InputException($"--tasks '{text}': the range is empty");
        }
        else if (!TryTask(s, out last))
            throw new InputException($"--tasks '{text}': expected t or 1..t (e.g. --tasks 1..3)");
        if (last > finishedTasks)
            throw new InputException($"--tasks {text}: the run has {(finishedTasks == 1 ? "1 finished task" : $"{finishedTasks} finished tasks")} (1..{finishedTasks}); task {last} is not one of them");
        return last;
    }

    private static bool TryTask(string s, out int task) =>
        int.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out task) && task >= 1;
}
