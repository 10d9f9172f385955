using System.Text.Json;
using System.Text.Json.Serialization;

namespace ContinualDiffusion.Models;

/// A diffusers boolean that may be given per block (`only_cross_attention`: `false` or `[false, true, ...]`).
[JsonConverter(typeof(PerBlockFlagJsonConverter))]
public sealed class PerBlockFlag
{
    public IReadOnlyList<bool> Values { get; }
    public bool IsList { get; }

    public PerBlockFlag(bool value) { Values = [value]; IsList = false; }
    public PerBlockFlag(IEnumerable<bool> values) { Values = values.ToArray(); IsList = true; }

    public static implicit operator PerBlockFlag(bool value) => new(value);

    public bool Any => Values.Any(v => v);

    public override string ToString() => IsList ? "[" + string.Join(", ", Values.Select(v => v ? "true" : "false")) + "]" : (Values[0] ? "true" : "false");
}

public sealed class PerBlockFlagJsonConverter : JsonConverter<PerBlockFlag>
{
    public override PerBlockFlag Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType is JsonTokenType.True or JsonTokenType.False) return new PerBlockFlag(reader.GetBoolean());
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("expected a boolean or a list of booleans");
        var values = new List<bool>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType is not (JsonTokenType.True or JsonTokenType.False)) throw new JsonException("expected a list of booleans");
            values.Add(reader.GetBoolean());
        }
        return new PerBlockFlag(values);
    }

    public override void Write(Utf8JsonWriter writer, PerBlockFlag value, JsonSerializerOptions options)
    {
        if (!value.IsList) { writer.WriteBooleanValue(value.Values[0]); return; }
        writer.WriteStartArray();
        foreach (var v in value.Values) writer.WriteBooleanValue(v);
        writer.WriteEndArray();
    }
}
