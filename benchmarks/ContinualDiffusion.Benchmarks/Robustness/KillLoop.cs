using System.Diagnostics;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// What every kill family does (`cdiff train`, `cdiff classify train`): time one task as a process, then start
/// trainings and `kill -9` each at a uniform moment of that duration, and after each check what a user does next.
/// An attempt whose process finished before its moment is reported too but is not a kill; at most 3 × kills attempts.
public static class KillLoop
{
    /// The training to start (and kill) next, and a few words on it for the report ("task 3, resumed").
    public sealed record Attempt(string[] Args, string What);

    /// What the user's next commands found after the attempt: problems (none = recovered) and what was done.
    public sealed record Recovery(IReadOnlyList<string> Problems, string Then);

    public static void Run(string label, FamilyTally tally, int kills, Random rng, string[] timingArgs, Func<Attempt> next,
        Func<Recovery> recover, Action<string> progress)
    {
        var clock = Stopwatch.StartNew();
        using (var timing = Cdiff.Start(timingArgs)) timing.WaitForExit();
        double full = clock.Elapsed.TotalSeconds;
        progress($"{label}: one task takes {full:F1} s as a process; killing at uniform moments in [0.2 s, {full:F1} s]");

        int killed = 0, attempts = 0;
        while (killed < kills && attempts < 3 * kills)
        {
            attempts++;
            var attempt = next();
            double at = 0.2 + rng.NextDouble() * (full - 0.2);
            using var p = Cdiff.Start(attempt.Args);
            bool exited = p.WaitForExit(TimeSpan.FromSeconds(at));
            if (!exited) { Cdiff.Signal(p, "KILL"); killed++; }
            p.WaitForExit();
            string moment = exited ? $"finished before {at:F2} s" : $"killed at {at:F2} s";

            var problems = new List<string>();
            if (exited && p.ExitCode != 0) problems.Add($"the training process exited with {p.ExitCode} on its own");
            var recovery = recover();
            problems.AddRange(recovery.Problems);
            bool bad = problems.Count > 0;
            string detail = bad ? "PROBLEM: " + string.Join("; ", problems) : $"then {recovery.Then}";
            tally.Add(new CaseResult(tally.Family, $"attempt {attempts} ({moment}, {attempt.What})", Crash: false, WrongExit: bad,
                Accepted: true, bad ? string.Join("; ", problems) : $"{moment}; then {recovery.Then}", 0));
            progress($"{label} attempt {attempts} (kill {killed}/{kills}): {moment} during {attempt.What}; {detail}");
        }
        progress($"{label}: {killed} kill -9 in {attempts} attempts (the others finished before their moment)");
    }

    /// The last line a command wrote to stderr (its one-line error).
    public static string Last(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";
}
