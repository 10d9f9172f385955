using System.Globalization;

namespace ContinualDiffusion.Lora;

/// How an adapter sequence was trained (Methods/ContinualMethod says what each one trains and how its tasks combine).
public enum AdapterMethod
{
    CLora,
    Lora,
    TextualInversion,
    CustomDiffusion,
    CustomDiffusionMerge,
    MagMax,
    OrthoInit,
    AnchoredLora,
}

public static class AdapterMethods
{
    private static readonly (AdapterMethod Method, string Name)[] Names =
    [
        (AdapterMethod.CLora, "clora"),
        (AdapterMethod.Lora, "lora"),
        (AdapterMethod.TextualInversion, "textual-inversion"),
        (AdapterMethod.CustomDiffusion, "custom-diffusion"),
        (AdapterMethod.CustomDiffusionMerge, "custom-diffusion-merge"),
        (AdapterMethod.MagMax, "magmax"),
        (AdapterMethod.OrthoInit, "ortho-init"),
        (AdapterMethod.AnchoredLora, "anchored-lora"),
    ];

    /// Every method name, in the order `--help` lists them.
    public static IReadOnlyList<string> AllNames { get; } = [.. Names.Select(n => n.Name)];

    /// The name used on the command line and in adapter files.
    public static string Name(this AdapterMethod method)
    {
        foreach (var (m, name) in Names) if (m == method) return name;
        throw new ArgumentOutOfRangeException(nameof(method), method, "unknown adapter method");
    }

    public static bool TryParse(string? name, out AdapterMethod method)
    {
        foreach (var (m, n) in Names)
        {
            if (n != name) continue;
            method = m;
            return true;
        }
        method = default;
        return false;
    }

    /// True for the methods whose adapters are low-rank factors A·B (their metadata carries a rank).
    public static bool IsLowRank(this AdapterMethod method) =>
        method is AdapterMethod.CLora or AdapterMethod.Lora or AdapterMethod.MagMax or AdapterMethod.OrthoInit or AdapterMethod.AnchoredLora;

    /// True for the methods whose adapters hold a dense [out, in] delta per layer.
    public static bool IsDense(this AdapterMethod method) => method is AdapterMethod.CustomDiffusion or AdapterMethod.CustomDiffusionMerge;
}

/// Who an adapter is: task number (1-based), the learned token (e.g. "<v3>"), LoRA rank (0 for a method without
/// low-rank factors), method, and the hash of the base model it was trained on (the deltas only make sense on top
/// of exactly those weights).
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
        if (!Enum.IsDefined(Method)) throw new AdapterFormatException($"{source}: metadata '{MethodKey}' is {(int)Method}, expected one of {string.Join(", ", AdapterMethods.AllNames)}");
        if (Method.IsLowRank() && Rank < 1) throw new AdapterFormatException($"{source}: metadata '{RankKey}' is {Rank}, expected a rank >= 1 (method {Method.Name()})");
        if (!Method.IsLowRank() && Rank != 0) throw new AdapterFormatException($"{source}: metadata '{RankKey}' is {Rank}, expected 0 (method {Method.Name()} has no low-rank factors)");
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
            throw new AdapterFormatException($"{path}: metadata '{MethodKey}' is '{methodName}', expected one of {string.Join(", ", AdapterMethods.AllNames)}");

        var parsed = new AdapterMetadata(
            Task: ParsePositiveInt(Get(TaskKey), TaskKey, path),
            Token: Get(TokenKey),
            Rank: method.IsLowRank() ? ParsePositiveInt(Get(RankKey), RankKey, path) : ParseZero(Get(RankKey), path, method),
            Method: method,
            BaseModelHash: Get(BaseModelHashKey));
        parsed.Validate(path);
        return parsed;
    }

    private static int ParseZero(string text, string path, AdapterMethod method) => text == "0"
        ? 0
        : throw new AdapterFormatException($"{path}: metadata '{RankKey}' is '{text}', expected 0 (method {method.Name()} has no low-rank factors)");

    private static int ParsePositiveInt(string text, string key, string path) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= 1
            ? v
            : throw new AdapterFormatException($"{path}: metadata '{key}' is '{text}', expected a positive integer");
}
