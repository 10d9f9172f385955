using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Lora;

/// A frozen Linear wrapped with the trainable change of the task being trained: low-rank factors
/// (ContinualLoraLinear) or a dense delta (DenseDeltaLinear). What a trainer needs, whatever the method.
public interface IAdaptedLinear
{
    /// Name of the adapted layer in the model, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k".
    string LayerName { get; }
    long OutFeatures { get; }
    long InFeatures { get; }

    /// The frozen past delta the layer trains on top of, [out, in] (zeros at task 1).
    Tensor PastDelta { get; }

    /// The current task's trainable tensors by their adapter-file suffix ("lora_A", "lora_B" or "delta").
    IEnumerable<(string Suffix, Parameter Value)> NamedTrainableParameters();
}
