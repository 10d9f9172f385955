using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Checkpoints;

/// A tensor to write with SafeTensorsFile.Save: its name, dtype and shape (for the header, written first) and how
/// to make it when its bytes are written. `DisposeAfterWrite`: the writer disposes what Produce returned.
public sealed record SafeTensorEntry(string Name, ScalarType DType, long[] Shape, Func<Tensor> Produce, bool DisposeAfterWrite = true);

/// One tensor's entry in a safetensors header.
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteCount => End - Begin;
}

/// Thrown for a safetensors file that is truncated, malformed or holds something we cannot read.
public sealed class SafeTensorsFormatException(string message) : InputException(message);

/// Reads a safetensors file tensor by tensor (never the whole file in one array: SD 1.5 in fp32 is ~4 GB).
/// The header is validated up front: size within the file, known dtypes, byte counts equal to shape × dtype
/// size, offsets in range and non-overlapping. Half-precision tensors are upcast to fp32 on read.
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly FileStream _stream;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, FileStream stream, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _stream = stream; _dataStart = dataStart; Tensors = tensors; Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw Directory.Exists(path) ? new InputException($"{path}: is a folder, expected a .safetensors file") : new FileNotFoundException($"{path}: safetensors file not found", path);
        PickleRefusal.ThrowIfPickle(path, "the tensors");
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            var (tensors, metadata, dataStart) = ReadHeader(stream, path);
            return new SafeTensorsFile(path, stream, dataStart, tensors, metadata);
        }
        catch (InvalidOperationException e) // System.Text.Json: names or strings that are not valid UTF-8
        {
            stream.Dispose();
            throw new SafeTensorsFormatException($"{path}: header is not valid UTF-8 JSON ({e.Message})");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// Bytes per element of a safetensors dtype, or 0 if we do not support it.
    public static int DTypeSize(string dtype) => dtype switch
    {
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "F64" or "I64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => 0,
    };

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>, long) ReadHeader(FileStream s, string path)
    {
        Span<byte> lenBytes = stackalloc byte[8];
        if (s.Length < 8 || s.Read(lenBytes) != 8) throw new SafeTensorsFormatException($"{path}: truncated (no header length)");
        long headerLen = (long)BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen <= 1 || headerLen > MaxHeaderBytes || 8 + headerLen > s.Length)
            throw new SafeTensorsFormatException($"{path}: header length {headerLen} does not fit in a {s.Length}-byte file");
        var headerBytes = new byte[headerLen];
        s.ReadExactly(headerBytes);
        long dataStart = 8 + headerLen, dataLen = s.Length - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerBytes); }
        catch (JsonException e) { throw new SafeTensorsFormatException($"{path}: header is not valid JSON ({e.Message})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SafeTensorsFormatException($"{path}: header is not a JSON object");

        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw new SafeTensorsFormatException($"{path}: __metadata__ is not an object");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                continue;
            }
            if (tensors.ContainsKey(prop.Name)) throw new SafeTensorsFormatException($"{path}: tensor '{prop.Name}' appears twice in the header");
            tensors[prop.Name] = ParseEntry(prop, path, dataLen);
        }

        // Offsets must not overlap (two tensors sharing bytes is a corrupt or hostile file).
        long previousEnd = 0; string? previous = null;
        foreach (var t in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin < previousEnd && t.ByteCount > 0)
                throw new SafeTensorsFormatException($"{path}: tensor '{t.Name}' overlaps '{previous}'");
            previousEnd = Math.Max(previousEnd, t.End); previous = t.Name;
        }
        return (tensors, metadata, dataStart);
    }

    private static SafeTensorInfo ParseEntry(JsonProperty prop, string path, long dataLen)
    {
        string name = prop.Name;
        var e = prop.Value;
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' needs dtype, shape and data_offsets [begin, end]");
        string dtype = dt.GetString()!;
        int size = DTypeSize(dtype);
        if (size == 0) throw new SafeTensorsFormatException($"{path}: tensor '{name}' has unsupported dtype '{dtype}'");
        var shape = new long[sh.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0) throw new SafeTensorsFormatException($"{path}: tensor '{name}' has an invalid shape");
            shape[i++] = v;
            if (v != 0 && count > dataLen / v) count = long.MaxValue; // more elements than the file has bytes: fails below
            else count *= v;
        }
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number || !off[0].TryGetInt64(out var begin) || !off[1].TryGetInt64(out var end) || begin < 0 || end < begin || end > dataLen)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' has data offsets outside the file (truncated?)");
        if (count == long.MaxValue || end - begin != count * size)
            throw new SafeTensorsFormatException($"{path}: tensor '{name}' holds {end - begin} bytes, shape [{string.Join(", ", shape)}] × {dtype} needs {(count == long.MaxValue ? "more than the file holds" : (count * size).ToString())}");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    /// Reads one tensor as a new CPU tensor; F16/BF16 are upcast to F32 unless keepDType.
    public Tensor Read(string name, bool keepDType = false)
    {
        if (!Tensors.TryGetValue(name, out var info)) throw new KeyNotFoundException($"{Path}: no tensor '{name}'");
        var bytes = new byte[info.ByteCount];
        lock (_stream)
        {
            _stream.Seek(_dataStart + info.Begin, SeekOrigin.Begin);
            _stream.ReadExactly(bytes);
        }
        var t = info.Shape.Length == 0 ? torch.zeros(Array.Empty<long>(), ToScalarType(info.DType)) : torch.empty(info.Shape, ToScalarType(info.DType));
        if (bytes.Length > 0) t.bytes = bytes;
        if (!keepDType && (t.dtype == ScalarType.Float16 || t.dtype == ScalarType.BFloat16))
        {
            var up = t.to_type(ScalarType.Float32);
            t.Dispose();
            return up;
        }
        return t;
    }

    public Dictionary<string, Tensor> ReadAll(bool keepDType = false) =>
        Tensors.Keys.ToDictionary(k => k, k => Read(k, keepDType), StringComparer.Ordinal);

    public static ScalarType ToScalarType(string dtype) => dtype switch
    {
        "F32" => ScalarType.Float32, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16, "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool,
        _ => throw new SafeTensorsFormatException($"unsupported dtype '{dtype}'"),
    };

    public static string ToDType(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16", ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"cannot store dtype {t} in safetensors"),
    };

    /// Reads every tensor of a file at once (convenience for small files and tests).
    public static Dictionary<string, Tensor> Load(string path, bool keepDType = false)
    {
        using var f = Open(path);
        return f.ReadAll(keepDType);
    }

    /// Writes tensors (sorted by name, as the reference implementation does) with optional string metadata,
    /// atomically: a temp file in the same folder, flushed, then renamed over the destination.
    /// With `checksum`, the metadata also holds "data_sha256", the SHA-256 of the data section, which
    /// <see cref="VerifyChecksum"/> checks (for files that are small and must be exactly what was written: run
    /// checkpoints).
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        bool checksum = false)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (checksum)
        {
            using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            foreach (var n in names)
            {
                using var scope = torch.NewDisposeScope();
                sha.AppendData(tensors[n].detach().cpu().contiguous().bytes);
            }
            metadata = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { [ChecksumKey] = Convert.ToHexStringLower(sha.GetHashAndReset()) };
        }
        var entries = names.Select(n => new SafeTensorEntry(n, tensors[n].dtype, tensors[n].shape, () => tensors[n], DisposeAfterWrite: false)).ToList();
        Save(path, entries, metadata);
    }

    /// Writes tensors one at a time, atomically, without holding them all in memory: each entry's tensor is
    /// produced when its bytes are written (and disposed then, unless the entry says otherwise), so a whole UNet can
    /// be rewritten with the memory of its largest tensor. Entries are written sorted by name; a produced tensor
    /// must have the entry's dtype and shape.
    public static void Save(string path, IReadOnlyList<SafeTensorEntry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sorted = entries.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        var duplicate = sorted.Zip(sorted.Skip(1)).FirstOrDefault(p => p.First.Name == p.Second.Name);
        if (duplicate.First is not null) throw new ArgumentException($"tensor '{duplicate.First.Name}' appears twice", nameof(entries));
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var e in sorted)
        {
            long bytes = e.Shape.Aggregate(1L, (a, b) => a * b) * ElementSize(e.DType);
            header[e.Name] = new { dtype = ToDType(e.DType), shape = e.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8; // keep tensor data 8-byte aligned, padding with spaces as the spec allows
        var headerBytes = new byte[json.Length + pad];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < headerBytes.Length; i++) headerBytes[i] = (byte)' ';

        AtomicFile.Write(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)headerBytes.Length);
            stream.Write(len);
            stream.Write(headerBytes);
            foreach (var e in sorted)
            {
                using var scope = torch.NewDisposeScope(); // detach/cpu/contiguous each make a tensor
                var t = e.Produce();
                try
                {
                    if (t.dtype != e.DType || !t.shape.SequenceEqual(e.Shape))
                        throw new InvalidOperationException($"tensor '{e.Name}' was declared {e.DType} [{string.Join(", ", e.Shape)}] but is {t.dtype} [{string.Join(", ", t.shape)}]");
                    stream.Write(t.detach().cpu().contiguous().bytes);
                }
                finally
                {
                    if (e.DisposeAfterWrite) t.Dispose();
                }
            }
        });
    }

    private static long ElementSize(ScalarType t) => DTypeSize(ToDType(t));

    public const string ChecksumKey = "data_sha256";

    /// Compares the data section with the "data_sha256" the writer recorded; a file without one passes.
    public void VerifyChecksum()
    {
        if (!Metadata.TryGetValue(ChecksumKey, out var expected)) return;
        string actual;
        lock (_stream)
        {
            _stream.Seek(_dataStart, SeekOrigin.Begin);
            actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(_stream));
        }
        if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
            throw new SafeTensorsFormatException($"{Path}: the data does not match the checksum written with it (the file is damaged)");
    }

    public void Dispose() => _stream.Dispose();
}
