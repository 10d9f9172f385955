using ContinualDiffusion.Checkpoints;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// How one diffusers tensor is made from one tensor of an original-LDM checkpoint.
public enum TensorConversion
{
    /// Same values, same shape: only the name changes.
    Copy,

    /// A 1×1 convolution weight [out, in, 1, 1] (or a 1-D convolution's [out, in, 1]) read as the Linear weight
    /// [out, in]: LDM's VAE attention computes q, k, v and proj_out with 1×1 convolutions where diffusers' Attention
    /// uses Linear layers (the same matrix). A weight that is already [out, in] is copied.
    Conv1x1ToLinear,

    /// OpenCLIP's fused attention input projection (`attn.in_proj_weight` [3D, D], `attn.in_proj_bias` [3D]) holds q,
    /// k and v stacked by rows, torch.nn.MultiheadAttention's layout; transformers' CLIP has separate q_proj, k_proj
    /// and v_proj. These take rows [0, D), [D, 2D) and [2D, 3D).
    QueryRows,
    KeyRows,
    ValueRows,
}

/// One tensor of a diffusers component (`SourceKey` names the LDM tensor it comes from) and its shape after the
/// conversion, computed from the safetensors header alone so that a mismatch is found before any weight is read.
public sealed record MappedTensor(string SourceKey, TensorConversion Conversion, long[] Shape)
{
    /// The mapped tensor for `source`, with the converted shape; a shape the conversion cannot take is an error
    /// naming the file and key.
    public static MappedTensor Create(SafeTensorInfo source, TensorConversion conversion, string file)
    {
        var s = source.Shape;
        long[] shape = conversion switch
        {
            TensorConversion.Copy => s,
            TensorConversion.Conv1x1ToLinear when s.Length == 2 => s,
            TensorConversion.Conv1x1ToLinear when s.Length is 3 or 4 && s.Skip(2).All(d => d == 1) => [s[0], s[1]],
            TensorConversion.Conv1x1ToLinear => throw new CheckpointMismatchException(
                $"{file}: key '{source.Name}' has shape [{string.Join(", ", s)}], expected a 1×1 convolution weight [out, in, 1, 1] or a matrix [out, in]"),
            _ when s.Length is 1 or 2 && s[0] % 3 == 0 => [s[0] / 3, .. s.Skip(1)],
            _ => throw new CheckpointMismatchException(
                $"{file}: key '{source.Name}' has shape [{string.Join(", ", s)}], expected q, k and v stacked by rows ([3·D, D] or [3·D])"),
        };
        return new MappedTensor(source.Name, conversion, shape);
    }

    /// The diffusers tensor from the LDM tensor `source` (as read from the file). The result may be a view of
    /// `source`: both belong to the caller's dispose scope.
    public Tensor Convert(Tensor source) => Conversion switch
    {
        TensorConversion.Copy => source,
        TensorConversion.Conv1x1ToLinear => source.reshape(Shape),
        TensorConversion.QueryRows => source.narrow(0, 0, Shape[0]),
        TensorConversion.KeyRows => source.narrow(0, Shape[0], Shape[0]),
        TensorConversion.ValueRows => source.narrow(0, 2 * Shape[0], Shape[0]),
        _ => throw new ArgumentOutOfRangeException(nameof(Conversion), Conversion, null),
    };
}
