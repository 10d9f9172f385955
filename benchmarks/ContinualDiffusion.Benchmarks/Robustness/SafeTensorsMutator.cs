using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// Damaged versions of a valid safetensors file, one per (seed, index): the header length, the header bytes, the
/// header's JSON (offsets, dtypes, shapes, keys, metadata, encoding, size) and the data. Every kind is drawn in
/// turn, so N files cover every kind about N / Kinds.Length times.
public static class SafeTensorsMutator
{
    public static readonly string[] Kinds =
    [
        "flip-header-bytes", "truncate", "header-length-past-end", "header-length-near-2^64", "header-length-tiny",
        "offsets-out-of-range", "offsets-overlap", "offsets-reversed", "offsets-not-numbers", "unknown-dtype",
        "shape-mismatch", "shape-huge", "shape-negative", "shape-not-numbers", "missing-field", "duplicate-key",
        "metadata-wrong-type", "non-utf8-header", "huge-json-header", "deep-json-header", "not-an-object",
        "flip-data-bytes", "empty-file", "drop-tensor", "rename-tensor",
    ];

    /// Returns the mutated bytes and the kind of damage done.
    public static (byte[] Bytes, string Kind) Mutate(byte[] original, int index, int seed)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + index)); // not HashCode.Combine: it is seeded per process
        string kind = Kinds[index % Kinds.Length];
        long headerLen = (long)BinaryPrimitives.ReadUInt64LittleEndian(original);
        var header = original.AsSpan(8, (int)headerLen).ToArray();
        var data = original.AsSpan(8 + (int)headerLen).ToArray();
        JsonObject Json() => (JsonObject)JsonNode.Parse(header)!;
        string RandomTensor(JsonObject o)
        {
            var names = o.Select(kv => kv.Key).Where(k => k != "__metadata__").ToList();
            return names[rng.Next(names.Count)];
        }

        byte[] bytes = kind switch
        {
            "flip-header-bytes" => FlipBytes(original, 8, 8 + (int)headerLen, 1 + rng.Next(8), rng),
            "truncate" => original[..rng.Next(0, original.Length)],
            "header-length-past-end" => WithLength(original, (ulong)original.Length + (ulong)rng.Next(1, 1 << 20)),
            "header-length-near-2^64" => WithLength(original, ulong.MaxValue - (ulong)rng.Next(0, 1 << 16)),
            "header-length-tiny" => WithLength(original, (ulong)rng.Next(0, 3)),
            "flip-data-bytes" => FlipBytes(original, 8 + (int)headerLen, original.Length, 1 + rng.Next(64), rng),
            "empty-file" => rng.Next(2) == 0 ? [] : original[..rng.Next(1, 8)],
            "non-utf8-header" => Assemble(InsertInvalidUtf8(header, rng), data),
            "huge-json-header" => Assemble(Pad(header, rng.Next(2) == 0 ? 64 << 20 : 120 << 20), data),
            "deep-json-header" => Assemble(Encoding.UTF8.GetBytes(new string('[', 100_000) + new string(']', 100_000)), data),
            "not-an-object" => Assemble(Encoding.UTF8.GetBytes(rng.Next(2) == 0 ? "[1, 2, 3]" : "\"header\""), data),
            "duplicate-key" => Assemble(DuplicateKey(header, rng), data),
            _ => Assemble(EditJson(Json(), kind, rng, RandomTensor, data.Length), data),
        };
        return (bytes, kind);
    }

    private static byte[] EditJson(JsonObject o, string kind, Random rng, Func<JsonObject, string> pick, long dataLength)
    {
        var name = pick(o);
        var entry = (JsonObject)o[name]!;
        var offsets = (JsonArray)entry["data_offsets"]!;
        long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
        switch (kind)
        {
            case "offsets-out-of-range":
                entry["data_offsets"] = new JsonArray(begin, dataLength + 1 + rng.Next(1 << 20));
                break;
            case "offsets-overlap":
                var other = (JsonObject)o[pick(o)]!;
                var otherOffsets = (JsonArray)other["data_offsets"]!;
                long shift = Math.Max(1, (end - begin) / 2);
                entry["data_offsets"] = new JsonArray(otherOffsets[0]!.GetValue<long>() + (ReferenceEquals(other, entry) ? 0 : shift) - shift / 2,
                    otherOffsets[0]!.GetValue<long>() + (end - begin) + shift / 2);
                break;
            case "offsets-reversed":
                entry["data_offsets"] = new JsonArray(end, begin == end ? begin - 1 : begin);
                break;
            case "offsets-not-numbers":
                entry["data_offsets"] = rng.Next(3) switch { 0 => new JsonArray("0", "4"), 1 => new JsonArray(begin), _ => new JsonArray(-1, end) };
                break;
            case "unknown-dtype":
                entry["dtype"] = rng.Next(4) switch { 0 => "F8_E4M3", 1 => "f32", 2 => "COMPLEX64", _ => "" };
                break;
            case "shape-mismatch":
                var shape = (JsonArray)entry["shape"]!;
                if (shape.Count == 0) shape.Add(2);
                else { int k = rng.Next(shape.Count); shape[k] = shape[k]!.GetValue<long>() + 1 + rng.Next(3); }
                break;
            case "shape-huge":
                entry["shape"] = rng.Next(2) == 0 ? new JsonArray(1L << 40, 1L << 40) : new JsonArray(long.MaxValue, 3);
                break;
            case "shape-negative":
                entry["shape"] = new JsonArray(-1, 4);
                break;
            case "shape-not-numbers":
                entry["shape"] = rng.Next(3) switch { 0 => new JsonArray("4"), 1 => new JsonArray(1.5), _ => new JsonArray(new JsonArray(2)) };
                break;
            case "missing-field":
                entry.Remove(rng.Next(3) switch { 0 => "dtype", 1 => "shape", _ => "data_offsets" });
                break;
            case "metadata-wrong-type":
                o["__metadata__"] = rng.Next(2) == 0 ? new JsonArray(1, 2) : JsonValue.Create(42);
                break;
            case "drop-tensor":
                o.Remove(name);
                break;
            case "rename-tensor":
                var node = o[name]!;
                o.Remove(name);
                o[name + ".renamed"] = node;
                break;
            default:
                throw new ArgumentException(kind);
        }
        return Encoding.UTF8.GetBytes(o.ToJsonString());
    }

    private static byte[] DuplicateKey(byte[] header, Random rng)
    {
        var o = (JsonObject)JsonNode.Parse(header)!;
        var names = o.Select(kv => kv.Key).Where(k => k != "__metadata__").ToList();
        var name = names[rng.Next(names.Count)];
        string json = Encoding.UTF8.GetString(header).TrimEnd();
        string duplicate = $",{System.Text.Json.JsonSerializer.Serialize(name)}:{o[name]!.ToJsonString()}";
        return Encoding.UTF8.GetBytes(json[..^1] + duplicate + "}");
    }

    private static byte[] InsertInvalidUtf8(byte[] header, Random rng)
    {
        var bytes = header.ToList();
        int at = header.AsSpan().IndexOf((byte)'"') + 1; // inside the first key
        bytes.InsertRange(at, rng.Next(2) == 0 ? [0xC3, 0x28] : [0xFF, 0xFE, 0xFD]);
        return [.. bytes];
    }

    private static byte[] Pad(byte[] header, int size)
    {
        var padded = new byte[Math.Max(size, header.Length)];
        Array.Fill(padded, (byte)' ');
        header.CopyTo(padded, 0);
        return padded;
    }

    private static byte[] Assemble(byte[] header, byte[] data)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    private static byte[] WithLength(byte[] original, ulong length)
    {
        var bytes = (byte[])original.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
        return bytes;
    }

    private static byte[] FlipBytes(byte[] original, int from, int to, int count, Random rng)
    {
        var bytes = (byte[])original.Clone();
        if (to <= from) return bytes;
        for (int i = 0; i < count; i++) bytes[rng.Next(from, to)] ^= (byte)rng.Next(1, 256);
        return bytes;
    }
}
