using static TorchSharp.torch;

namespace ContinualDiffusion.Checkpoints;

/// The named tensors a strict load fills a module from, under the module's own parameter and buffer names: a
/// safetensors file as it is (SafeTensorsStateDict) or a renamed, converted view of one (an original-LDM single
/// file's components, Interop/SingleFile/LdmStateDict). StateDictLoader holds the strictness rules once; a source
/// only says what it offers (names and shapes, from the header), where each tensor is stored and how it is made
/// from the stored one, and how a mismatch reads in its own terms (a plain file names its key, a mapped view the
/// stored key and the module name it maps to).
public interface IStateDictSource
{
    /// The file the tensors are stored in.
    string Path { get; }

    /// Every tensor offered, by module name, with the shape it has after conversion.
    IReadOnlyDictionary<string, long[]> Shapes { get; }

    /// Offered names the module may lack without an error (e.g. transformers' saved `position_ids` buffer).
    bool MayBeUnused(string name);

    /// The stored tensor `name` is made from. Names that share one (OpenCLIP's fused q/k/v) are made from one read.
    string StoredKey(string name);

    /// Reads a stored tensor as a new CPU tensor (floating point upcast to fp32), owned by the caller's scope.
    Tensor ReadStored(string storedKey);

    /// `name`'s tensor from its stored tensor; may be a view of it (both stay in the caller's scope).
    Tensor Convert(string name, Tensor stored);

    /// The error for a module tensor the source does not offer (StateDictLoader appends "(and N more)").
    string MissingMessage(string name);

    /// The error for an offered tensor the module does not have.
    string UnexpectedMessage(string name);

    /// The error for an offered tensor whose shape is not the module's.
    string ShapeMessage(string name, long[] expected);
}
