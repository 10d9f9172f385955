using System.Text.Json;
using System.Text.Json.Serialization;

namespace ContinualDiffusion.Runs;

/// The run directory's manifest.json: what base model the run customizes, with which method, and every
/// finished task. Written atomically, and a task's entry only after its training finished with a finite loss.
public sealed record RunManifest
{
    public const int CurrentFormatVersion = 1;

    public int FormatVersion { get; init; } = CurrentFormatVersion;
    public required BaseModelInfo BaseModel { get; init; }
    public required string Method { get; init; }
    public List<TaskEntry> Tasks { get; init; } = [];

    public int LastTask => Tasks.Count == 0 ? 0 : Tasks.Max(t => t.Task);
}

public sealed record BaseModelInfo(string Path, string Hash);

/// One learned concept.
public sealed record TaskEntry
{
    public required int Task { get; init; }
    public required string Token { get; init; }
    public required long TokenId { get; init; }
    public required string AdapterFile { get; init; }
    public required string AdapterSha256 { get; init; }
    public required long AdapterBytes { get; init; }
    public required string ImageSetHash { get; init; }
    public required int ImageCount { get; init; }
    public required string Method { get; init; }
    public required int Rank { get; init; }
    public required double Lambda { get; init; }
    public required int Steps { get; init; }
    public required double LearningRate { get; init; }
    public required long Seed { get; init; }
    public required double FinalLoss { get; init; }
    public required double WallTimeSeconds { get; init; }
    public required DateTimeOffset FinishedUtc { get; init; }
}

internal static class ManifestJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };
}
