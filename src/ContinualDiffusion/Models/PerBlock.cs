using System.Text.Json;
using System.Text.Json.Serialization;
using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Models;

/// A diffusers config value that is either one number for every block or a list with one entry per block
/// (`attention_head_dim`, `num_attention_heads`, `layers_per_block`, `cross_attention_dim`,
/// `transformer_layers_per_block`). Kept as written so the error for a list of the wrong length can say so.
[JsonConverter(typeof(PerBlockJsonConverter))]
public sealed class PerBlock
{
    private readonly int[] _values;

    /// True when the config gave a list rather than a single number.
    public bool IsList { get; }

    public IReadOnlyList<int> Values => _values;

    public PerBlock(int value) { _values = [value]; IsList = false; }

    public PerBlock(IEnumerable<int> values) { _values = values.ToArray(); IsList = true; }

    public static implicit operator PerBlock(int value) => new(value);

    /// One value per block: a single number is repeated, a list must have exactly `blocks` entries.
    public int[] Expand(int blocks, string source, string key)
    {
        if (!IsList) return Enumerable.Repeat(_values[0], blocks).ToArray();
        if (_values.Length != blocks)
            throw new ConfigException($"{source}: key '{key}' has {_values.Length} entries, expected one per block ({blocks})");
        return (int[])_values.Clone();
    }

    public override string ToString() => IsList ? "[" + string.Join(", ", _values) + "]" : _values[0].ToString();
}

/// Reads `8` or `[5, 10, 20, 20]`; writes back the same form.
public sealed class PerBlockJsonConverter : JsonConverter<PerBlock>
{
    public override PerBlock Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number) return new PerBlock(reader.GetInt32());
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("expected an integer or a list of integers");
        var values = new List<int>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number) throw new JsonException("expected a list of integers");
            values.Add(reader.GetInt32());
        }
        return new PerBlock(values);
    }

    public override void Write(Utf8JsonWriter writer, PerBlock value, JsonSerializerOptions options)
    {
        if (!value.IsList) { writer.WriteNumberValue(value.Values[0]); return; }
        writer.WriteStartArray();
        foreach (var v in value.Values) writer.WriteNumberValue(v);
        writer.WriteEndArray();
    }
}
