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

    public MethodRun? TryLoad(string method, long seed, string fingerprint)
    {
        var path = PathOf(method, seed);
        if (!File.Exists(path)) return null;
        try
        {
            var entry = JsonSerializer.Deserialize<Entry>(File.ReadAllText(path), ResultsJson.Options);
            return entry is not null && entry.Fingerprint == fingerprint ? entry.Run : null;
        }
        catch (JsonException) { return null; } // a file from another version: recompute
    }

    public void Save(string method, long seed, string fingerprint, MethodRun run)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(PathOf(method, seed), JsonSerializer.Serialize(new Entry(fingerprint, run), ResultsJson.Options));
    }

    public static string FileSafe(string name) =>
        new([.. name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_')]);
}
