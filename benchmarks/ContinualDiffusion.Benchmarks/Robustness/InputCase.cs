namespace ContinualDiffusion.Benchmarks.Robustness;

/// What a bad or odd input may lead to. Refuse: exit 2 with one stderr line. AcceptOrRefuse: a valid but unusual
/// input (a 1×1 image, a safetensors file whose data bytes were flipped): exit 0, or a clean refusal.
public enum Expectation { Refuse, AcceptOrRefuse }

/// The verdict on one input. Crash: a signal, a hang or an exception that escaped the CLI. WrongExit: any exit
/// code but 2 for bad input (0 is also fine where accepting is), more than one stderr line, a message that does
/// not name the file, a run directory that changed, or memory allocated for a declared size before validation.
public sealed record CaseResult(string Family, string Name, bool Crash, bool WrongExit, bool Accepted, string Detail, double PeakRssGrowthMb);

/// Tallies one family's results into its report line.
public sealed class FamilyTally(string family)
{
    public List<CaseResult> Results { get; } = [];
    public string Family { get; } = family;
    public int Inputs => Results.Count;
    public int Crashes => Results.Count(r => r.Crash);
    public int WrongExits => Results.Count(r => r.WrongExit);

    public void Add(CaseResult r) => Results.Add(r);

    public string Line()
    {
        int accepted = Results.Count(r => r.Accepted && !r.Crash && !r.WrongExit);
        int refused = Results.Count(r => !r.Accepted && !r.Crash && !r.WrongExit);
        double rss = Results.Count == 0 ? 0 : Results.Max(r => r.PeakRssGrowthMb);
        return $"{Family}: {Inputs} inputs, {Crashes} crashes, {WrongExits} wrong exit codes ({refused} refused cleanly, {accepted} accepted; max RSS growth {rss:F0} MB)";
    }
}
