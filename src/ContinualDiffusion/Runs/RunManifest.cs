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
    public required List<TaskEntry> Tasks { get; init; }

    public int LastTask => Tasks.Count == 0 ? 0 : Tasks.Max(t => t.Task);

    /// What the JSON schema cannot say: tasks numbered 1..n once each, each with its own token, a positive rank, a
    /// known method, and an adapter file inside the run directory. Throws InputException naming `path`.
    public void Validate(string path)
    {
        if (Tasks is null || Tasks.Any(t => t is null)) throw new InputException($"{path}: tasks must be a list of task entries");
        if (BaseModel is null || string.IsNullOrEmpty(BaseModel.Path) || string.IsNullOrEmpty(BaseModel.Hash))
            throw new InputException($"{path}: base_model needs a path and a hash");
        BaseModel.SingleFile?.Validate(path);
        if (!Lora.AdapterMethods.TryParse(Method, out _)) throw new InputException($"{path}: method '{Method}' is not a known method");
        var numbers = Tasks.Select(t => t.Task).ToList();
        if (!numbers.SequenceEqual(Enumerable.Range(1, numbers.Count)))
            throw new InputException($"{path}: tasks must be numbered 1..{numbers.Count} in order, once each (found {string.Join(", ", numbers)})");
        foreach (var t in Tasks)
        {
            string where = $"{path}: task {t.Task}";
            if (t.Token is null || t.Token != Text.ConceptTokens.Name(t.Task)) throw new InputException($"{where}: token '{t.Token}', expected '{Text.ConceptTokens.Name(t.Task)}'");
            if (!Lora.AdapterMethods.TryParse(t.Method, out var method)) throw new InputException($"{where}: method '{t.Method}' is not a known method");
            if (t.Method != Method) throw new InputException($"{where}: method '{t.Method}', but the run's method is '{Method}' (a run keeps one method)");
            if (Lora.AdapterMethods.IsLowRank(method) ? t.Rank < 1 : t.Rank != 0)
                throw new InputException($"{where}: rank {t.Rank} must be {(Lora.AdapterMethods.IsLowRank(method) ? "at least 1" : $"0 (method {t.Method} has no low-rank factors)")}");
            if (string.IsNullOrEmpty(t.AdapterFile) || System.IO.Path.IsPathRooted(t.AdapterFile)
                || t.AdapterFile.Replace('\\', '/').Split('/').Any(part => part is ".." or "."))
                throw new InputException($"{where}: adapter_file '{t.AdapterFile}' must be a path inside the run directory");
            if (t.Token is null || t.Method is null) throw new InputException($"{where}: token and method are required");
            if (t.AdapterBytes < 0 || t.AdapterSha256?.Length != 64) throw new InputException($"{where}: adapter_bytes/adapter_sha256 are not a size and a SHA-256");
            if (t.RetriedSteps < 0 || t.RetriedSteps > t.Steps || t.DroppedSteps < 0 || t.DroppedSteps > t.Steps)
                throw new InputException($"{where}: retried_steps {t.RetriedSteps} and dropped_steps {t.DroppedSteps} must each be from 0 to steps ({t.Steps})");
            t.Training?.Validate(where, t.ImageCount);
        }
    }
}

/// The base model a run is bound to: where it was at task 1, its identity hash (BaseModelSource.ComputeIdentityHash)
/// and, for an original-LDM single file, the options it was opened with. `single_file` is absent for a diffusers
/// folder, and so in every manifest written before single files were read: those load unchanged, and a folder run
/// still writes exactly the old form.
public sealed record BaseModelInfo(
    string Path,
    string Hash,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] SingleFileInfo? SingleFile = null)
{
    /// The description of an opened base model for a new run's manifest.
    public static BaseModelInfo Of(Checkpoints.BaseModelSource source, string hash) =>
        new(source.Path, hash, source.SingleFile is { } file ? SingleFileInfo.Of(file.Options) : null);
}

/// How a single-file base model was opened at task 1 (`--original-config`, `--prediction-type`; null when not
/// given), so that later tasks and `cdiff sample --run` reopen it the same way without the user repeating them.
/// The yaml's SHA-256 tells a changed yaml from a moved one; the identity hash covers both anyway.
public sealed record SingleFileInfo(string? OriginalConfig, string? OriginalConfigSha256, string? PredictionType)
{
    public static SingleFileInfo Of(Interop.SingleFile.SingleFileOptions options) => new(
        options.OriginalConfigPath,
        options.OriginalConfigPath is { } yaml ? RunDirectory.Sha256File(yaml) : null,
        options.PredictionType);

    /// A yaml path goes with its SHA-256, and the prediction type is one a single file can have.
    public void Validate(string path)
    {
        if ((OriginalConfig is null) != (OriginalConfigSha256 is null) || (OriginalConfigSha256 is { } sha && !IsSha256(sha)))
            throw new InputException($"{path}: base_model.single_file needs original_config and original_config_sha256 together (a path and a SHA-256), or neither");
        if (PredictionType is { } p && !Interop.SingleFile.LdmArchitecture.PredictionTypes.Contains(p, StringComparer.Ordinal))
            throw new InputException($"{path}: base_model.single_file.prediction_type '{p}' is not one of {string.Join(", ", Interop.SingleFile.LdmArchitecture.PredictionTypes)}");
    }

    private static bool IsSha256(string s) => s.Length == 64 && s.All(char.IsAsciiHexDigit);
}

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

    /// Steps whose non-finite gradients (oneDNN's rare NaN) were computed again, and half-precision steps still
    /// non-finite then, whose update was dropped (Training/NonFiniteStepGuard). Written only when not zero, so a
    /// manifest of a task without any reads as before, also to a cdiff older than these fields.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int RetriedSteps { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int DroppedSteps { get; init; }

    /// The rest of how the task was trained (TaskRecipe); absent in manifests written before it was recorded.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public TaskRecipe? Training { get; init; }
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
