using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ContinualDiffusion.Pretraining;

/// What a pretrained folder was trained from, and how long it took: `cdiff-pretrain.json` in the output.
public sealed record PretrainRecord
{
    public const string FileName = "cdiff-pretrain.json";

    public required string Fingerprint { get; init; }
    public required JsonObject Request { get; init; }
    public required int ImageCount { get; init; }
    public required double ScalingFactor { get; init; }
    public required double VaeFinalLoss { get; init; }
    public required double UnetFinalLoss { get; init; }
    public required double VaeSeconds { get; init; }
    public required double EncodeSeconds { get; init; }
    public required double UnetSeconds { get; init; }
    public required double TotalSeconds { get; init; }
    public double VaeStepsPerSecond { get; init; }
    public double UnetStepsPerSecond { get; init; }
    public DateTimeOffset CreatedUtc { get; init; } = DateTimeOffset.UtcNow;

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// The record in `folder`, or null when there is none (a folder this command did not write).
    public static PretrainRecord? TryRead(string folder)
    {
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<PretrainRecord>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new InputException($"{path}: unreadable ({e.Message}); use --force to retrain into this folder"); }
    }
}

/// SHA-256 of the canonical request (every option that changes the weights; not --out or --force), the
/// architecture file's bytes and the training data's identity. Equal fingerprint = the same model would be
/// trained again, so the existing folder is reused.
public static class PretrainFingerprint
{
    public static JsonObject Canonical(PretrainRequest r, PretrainArchitecture arch, string dataIdentity) => new()
    {
        ["format"] = 1,
        ["data"] = r.ImagesDir is null
            ? $"fashion-mnist classes={string.Join(",", r.Classes)} captions={r.Captions.ToString().ToLowerInvariant()}"
            : $"images {Path.GetFullPath(r.ImagesDir)}",
        ["data_sha256"] = dataIdentity,
        ["max_images"] = r.MaxImages,
        ["architecture"] = Path.GetFileName(arch.Source),
        ["architecture_sha256"] = arch.ContentHash,
        ["resolution"] = r.Resolution,
        ["vae_steps"] = r.VaeSteps,
        ["unet_steps"] = r.UnetSteps,
        ["batch_size"] = r.BatchSize,
        ["vae_batch_size"] = r.VaeBatchSize,
        ["lr"] = r.LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["seed"] = r.Seed,
    };

    public static string Compute(JsonObject canonical) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical.ToJsonString())));
}
