using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ContinualDiffusion.Configuration;

/// A config file that is missing, malformed, has an unknown key or a value of the wrong kind.
/// The message always names the file and, where there is one, the key.
public sealed class ConfigException(string message) : InputException(message);

/// Loads JSON config files (ours under configs/, and diffusers' config.json files) into records.
/// Keys are snake_case as in diffusers; unknown keys are rejected by name; keys starting with '_'
/// (diffusers' bookkeeping such as _class_name, _diffusers_version) are ignored.
public static class JsonConfig
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    public static T Load<T>(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: config file not found");
        string text = File.ReadAllText(path);
        return Parse<T>(text, path);
    }

    public static T Parse<T>(string json, string source)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(PythonJson.QuoteNonFiniteNumbers(json), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new ConfigException($"{source}: not valid JSON ({e.Message})"); }
        if (node is not JsonObject obj) throw new ConfigException($"{source}: expected a JSON object");
        foreach (var key in obj.Select(p => p.Key).Where(k => k.StartsWith('_')).ToList()) obj.Remove(key);
        try
        {
            return obj.Deserialize<T>(Options) ?? throw new ConfigException($"{source}: empty config");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: {Describe(e)}");
        }
    }

    /// Turns System.Text.Json's messages into "unknown key 'x'" / "key 'x': expected ..." one-liners.
    private static string Describe(JsonException e)
    {
        var key = e.Path is { Length: > 2 } p ? p.TrimStart('$', '.') : null;
        var msg = e.Message;
        int unknown = msg.IndexOf("could not be mapped to any .NET member", StringComparison.Ordinal);
        if (unknown >= 0)
        {
            // "The JSON property 'foo' could not be mapped ..."
            int a = msg.IndexOf('\''), b = a >= 0 ? msg.IndexOf('\'', a + 1) : -1;
            var name = a >= 0 && b > a ? msg[(a + 1)..b] : key;
            return $"unknown key '{name}'";
        }
        int missing = msg.IndexOf("missing required properties", StringComparison.Ordinal);
        if (missing >= 0) return "missing required key(s): " + msg[(missing + "missing required properties".Length)..].Trim(' ', ':', '.').Split(". ")[0];
        return key is null ? msg : $"key '{key}': expected a value of another type ({msg.Split(". Path:")[0]})";
    }

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);
}
