using ContinualDiffusion.Checkpoints;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// One component of an original-LDM single file seen under its diffusers names: the names and converted shapes
/// LdmKeyMap computed from the header, each read from its LDM tensor and converted by MappedTensor. Loaded by
/// StateDictLoader's strict rules; errors name the file, the LDM key and the diffusers key.
public sealed class LdmStateDict : IStateDictSource
{
    private readonly SafeTensorsFile _file;
    private readonly IReadOnlyDictionary<string, MappedTensor> _mapped;
    private readonly string _what;

    public LdmStateDict(SafeTensorsFile file, IReadOnlyDictionary<string, MappedTensor> mapped, SdComponent component)
    {
        _file = file;
        _mapped = mapped;
        _what = LdmMapping.Describe(component);
        Shapes = mapped.ToDictionary(m => m.Key, m => m.Value.Shape, StringComparer.Ordinal);
    }

    public string Path => _file.Path;
    public IReadOnlyDictionary<string, long[]> Shapes { get; }

    /// The keys no part of the pipeline reads are already out of the mapping (LdmMapping.Ignored).
    public bool MayBeUnused(string name) => false;

    public string StoredKey(string name) => _mapped[name].SourceKey;
    public Tensor ReadStored(string storedKey) => _file.Read(storedKey);
    public Tensor Convert(string name, Tensor stored) => _mapped[name].Convert(stored);

    public string MissingMessage(string name) =>
        $"{Path}: no key of this LDM checkpoint gives the {_what}'s '{name}'";

    public string UnexpectedMessage(string name) =>
        $"{Path}: key '{_mapped[name].SourceKey}' maps to the {_what}'s '{name}', which the model inferred from this file does not have";

    public string ShapeMessage(string name, long[] expected) =>
        $"{Path}: key '{_mapped[name].SourceKey}' gives the {_what}'s '{name}' shape [{string.Join(", ", _mapped[name].Shape)}], the model expects [{string.Join(", ", expected)}]";
}
