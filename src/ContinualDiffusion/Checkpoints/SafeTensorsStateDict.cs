using static TorchSharp.torch;

namespace ContinualDiffusion.Checkpoints;

/// A safetensors file whose keys are the module's names (diffusers / transformers components, adapter and
/// classifier files), optionally under a key prefix: every tensor offered as it is stored.
public sealed class SafeTensorsStateDict : IStateDictSource
{
    private readonly SafeTensorsFile _file;
    private readonly Func<string, bool>? _ignoreUnexpected;
    private readonly string _prefix;

    /// `ignoreUnexpected` tests a stored key (with its prefix) that may be left over; `keyPrefix` limits the source
    /// to the keys under it, offered without it.
    public SafeTensorsStateDict(SafeTensorsFile file, Func<string, bool>? ignoreUnexpected = null, string? keyPrefix = null)
    {
        _file = file;
        _ignoreUnexpected = ignoreUnexpected;
        _prefix = keyPrefix ?? "";
        Shapes = file.Tensors
            .Where(t => t.Key.StartsWith(_prefix, StringComparison.Ordinal))
            .ToDictionary(t => t.Key[_prefix.Length..], t => t.Value.Shape, StringComparer.Ordinal);
    }

    public string Path => _file.Path;
    public IReadOnlyDictionary<string, long[]> Shapes { get; }
    public bool MayBeUnused(string name) => _ignoreUnexpected?.Invoke(StoredKey(name)) ?? false;
    public string StoredKey(string name) => _prefix + name;
    public Tensor ReadStored(string storedKey) => _file.Read(storedKey);
    public Tensor Convert(string name, Tensor stored) => stored;

    public string MissingMessage(string name) => $"{Path}: missing key '{StoredKey(name)}'";
    public string UnexpectedMessage(string name) => $"{Path}: unexpected key '{StoredKey(name)}'";

    public string ShapeMessage(string name, long[] expected) =>
        $"{Path}: key '{StoredKey(name)}' has shape [{string.Join(", ", Shapes[name])}], the model expects [{string.Join(", ", expected)}]";
}
