using System.Globalization;

namespace ContinualDiffusion.Lora;

/// How an adapter sequence was trained: C-LoRA (with the self-regulariser) or plain sequential LoRA (λ = 0).
public enum AdapterMethod
{
    CLora,
    Lora,
}

public static class AdapterMethods
{
    /// The name used on the command line and in adapter files.
    public static string Name(this AdapterMethod method) => method switch
    {
        AdapterMethod.CLora => "clora",
        AdapterMethod.Lora => "lora",
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown adapter method"),
    };

    public static bool TryParse(string? name, out AdapterMethod method)
    {
        switch (name)
        {
            case "clora": method = AdapterMethod.CLora; return true;
            case "lora": method = AdapterMethod.Lora; return true;
            default: method = default; return false;
        }
    }
}

/// Who an adapter is: task number (1-based), the learned token (e.g. "<v3>"), LoRA rank, method, and the hash
/// of the base model it was trained on (the deltas only make sense on top of exactly those weights).
public sealed record AdapterMetadata(int Task, string Token, int Rank, AdapterMethod Method, string BaseModelHash)
{
    /// Bumped whenever the file layout changes; files of another version are refused, not guessed at.
    public const int FormatVersion = 1;

    /// Identifies our files among other safetensors files (the value of the `cdiff_format` metadata key).
    public const string FormatName = "cdiff-lora-adapter";

    internal const string FormatKey = "cdiff_format";
    internal const string FormatVersionKey = "format_version";
    internal const string TaskKey = "task";
    internal const string TokenKey = "token";
    internal const string RankKey = "rank";
    internal const string MethodKey = "method";
    internal const string BaseModelHashKey = "base_model_hash";

    /// Throws AdapterFormatException (naming `source`) if a field is out of range.
    public void Validate(string source)
    {
        if (Task < 1) throw new AdapterFormatException($"{source}: metadata '{TaskKey}' is {Task}, expected a task number >= 1");
        if (string.IsNullOrWhiteSpace(Token)) throw new AdapterFormatException($"{source}: metadata '{TokenKey}' is empty, expected the learned token (e.g. \"<v1>\")");
        if (Rank < 1) throw new AdapterFormatException($"{source}: metadata '{RankKey}' is {Rank}, expected a rank >= 1");
        if (!Enum.IsDefined(Method)) throw new AdapterFormatException($"{source}: metadata '{MethodKey}' is {(int)Method}, expected c-lora or lora");
        if (string.IsNullOrWhiteSpace(BaseModelHash)) throw new AdapterFormatException($"{source}: metadata '{BaseModelHashKey}' is empty, expected the base model's hash");
    }

    /// The safetensors `__metadata__` map (all values are strings, as the format requires).
    public IReadOnlyDictionary<string, string> ToSafeTensorsMetadata() => new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["format"] = "pt",
        [FormatKey] = FormatName,
        [FormatVersionKey] = FormatVersion.ToString(CultureInfo.InvariantCulture),
        [TaskKey] = Task.ToString(CultureInfo.InvariantCulture),
        [TokenKey] = Token,
        [RankKey] = Rank.ToString(CultureInfo.InvariantCulture),
        [MethodKey] = Method.Name(),
        [BaseModelHashKey] = BaseModelHash,
    };

    /// Reads and validates the metadata of the adapter file `path`.
    public static AdapterMetadata Parse(IReadOnlyDictionary<string, string> metadata, string path)
    {
        string Get(string key) => metadata.TryGetValue(key, out var v)
            ? v
            : throw new AdapterFormatException($"{path}: metadata key '{key}' is missing (not a cdiff adapter file?)");

        string format = Get(FormatKey);
        if (format != FormatName)
            throw new AdapterFormatException($"{path}: metadata '{FormatKey}' is '{format}', expected '{FormatName}'");
        int version = ParsePositiveInt(Get(FormatVersionKey), FormatVersionKey, path);
        if (version != FormatVersion)
            throw new AdapterFormatException($"{path}: metadata '{FormatVersionKey}' is {version}, this build reads version {FormatVersion}");
        string methodName = Get(MethodKey);
        if (!AdapterMethods.TryParse(methodName, out var method))
            throw new AdapterFormatException($"{path}: metadata '{MethodKey}' is '{methodName}', expected c-lora or lora");

        var parsed = new AdapterMetadata(
            Task: ParsePositiveInt(Get(TaskKey), TaskKey, path),
            Token: Get(TokenKey),
            Rank: ParsePositiveInt(Get(RankKey), RankKey, path),
            Method: method,
            BaseModelHash: Get(BaseModelHashKey));
        parsed.Validate(path);
        return parsed;
    }

    private static int ParsePositiveInt(string text, string key, string path) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= 1
            ? v
            : throw new AdapterFormatException($"{path}: metadata '{key}' is '{text}', expected a positive integer");
}
