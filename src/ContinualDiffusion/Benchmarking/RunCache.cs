using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Evaluation.Reporting;

namespace ContinualDiffusion.Benchmarking;

/// Finished (method, seed) runs, one JSON file each, so an interrupted multi-seed benchmark resumes where it
/// stopped instead of starting over. A cached run is reused only when it was made with exactly the same settings
/// (its fingerprint); anything else is recomputed.
public sealed class RunCache(string folder)
{
    private sealed record Entry(string Fingerprint, MethodRun Run);

    public string PathOf(string method, long seed) => Path.Combine(folder, $"{FileSafe(method)}-seed{seed}.json");

    /// The few samples per (task, concept) cell the run's grid shows, kept next to its results.
    public string SamplesPathOf(string method, long seed) => Path.Combine(folder, $"{FileSafe(method)}-seed{seed}.samples.safetensors");

    /// The cached run of (method, seed) when it was made with `fingerprint` (or `alsoAccepted`: the same settings as an
    /// older version of the fingerprint wrote them); null otherwise.
    public MethodRun? TryLoad(string method, long seed, string fingerprint, string? alsoAccepted = null)
    {
        var path = PathOf(method, seed);
        if (!File.Exists(path)) return null;
        try
        {
            var entry = JsonSerializer.Deserialize<Entry>(File.ReadAllText(path), ResultsJson.Options);
            return entry is not null && (entry.Fingerprint == fingerprint || entry.Fingerprint == alsoAccepted) ? entry.Run : null;
        }
        catch (JsonException) { return null; } // a file from another version: recompute
    }

    /// Why a cached run of (method, seed) is not reused: null when there is none or it matches; otherwise where its
    /// fingerprint first differs from `fingerprint` (a few characters of each), so a user sees which setting changed.
    public string? Mismatch(string method, long seed, string fingerprint, string? alsoAccepted = null)
    {
        var path = PathOf(method, seed);
        if (!File.Exists(path)) return null;
        string stored;
        try { stored = JsonSerializer.Deserialize<Entry>(File.ReadAllText(path), ResultsJson.Options)?.Fingerprint ?? ""; }
        catch (JsonException e) { return $"{path} cannot be read ({e.Message})"; }
        if (stored == fingerprint || stored == alsoAccepted) return null;
        int i = 0;
        while (i < stored.Length && i < fingerprint.Length && stored[i] == fingerprint[i]) i++;
        static string Around(string s, int at) => s.Substring(Math.Max(0, at - 40), Math.Min(s.Length, at + 60) - Math.Max(0, at - 40)).Replace("\n", " ");
        return $"{path} was made with other settings: it has …{Around(stored, i)}…, this benchmark …{Around(fingerprint, i)}…";
    }

    public void Save(string method, long seed, string fingerprint, MethodRun run)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(PathOf(method, seed), JsonSerializer.Serialize(new Entry(fingerprint, run), ResultsJson.Options));
    }

    public static string FileSafe(string name) =>
        new([.. name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_')]);
}
