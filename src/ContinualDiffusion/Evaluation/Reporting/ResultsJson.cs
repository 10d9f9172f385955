using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using ContinualDiffusion.Checkpoints;

namespace ContinualDiffusion.Evaluation.Reporting;

/// results.json: the raw benchmark results (not the aggregates, which are recomputed from them), snake_case keys.
/// Written atomically so an interrupted benchmark never leaves a half file; validated on write and on read.
public static class ResultsJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        // λ is NaN for methods without one; JSON has no NaN literal, so allow the named form "NaN".
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
        // Concept names such as "<v1> = pullover" stay readable instead of becoming \u003Cv1\u003E; the file is
        // never embedded in HTML, which is what the default escaping guards against.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Write(string path, BenchmarkResults results)
    {
        ResultsValidation.Validate(results);
        AtomicFile.Write(path, s => JsonSerializer.Serialize(s, results, Options));
    }

    public static BenchmarkResults Read(string path)
    {
        if (!File.Exists(path)) throw new ResultsException($"{path}: results file not found");
        BenchmarkResults? results;
        try
        {
            using var stream = File.OpenRead(path);
            results = JsonSerializer.Deserialize<BenchmarkResults>(stream, Options);
        }
        catch (JsonException e)
        {
            throw new ResultsException($"{path}: not a valid results file ({e.Message})");
        }
        if (results is null) throw new ResultsException($"{path}: empty results file");
        if (results.FormatVersion != BenchmarkResults.CurrentFormatVersion)
            throw new ResultsException($"{path}: format_version {results.FormatVersion}, expected {BenchmarkResults.CurrentFormatVersion}");
        try { ResultsValidation.Validate(results); }
        catch (ResultsException e) { throw new ResultsException($"{path}: {e.Message}"); }
        return results;
    }
}
