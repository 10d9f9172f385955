using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// One stored tensor of a model, by name (a diffusers name, or an LDM key for tensors carried over verbatim), with
/// its stored dtype and shape, read only when asked: `Read(keepDType)` returns a new tensor the caller owns, in the
/// stored dtype when `keepDType`, else with half precision upcast to float32 (as the model loaders read it).
public sealed record ComponentTensor(string Name, ScalarType DType, long[] Shape, Func<bool, Tensor> Read);
