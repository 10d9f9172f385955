using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Runtime;

/// Tensor arithmetic with numbers that leaves no TorchSharp `Scalar` to the finalizer: the Scalar half of the
/// ownership rule in <see cref="TensorOwnership"/>. TorchSharp makes an unowned Scalar for every implicit number
/// conversion (`x * 0.5`, `x.clamp(0, 1)`) and inside some of its own methods (`a + b` and `a.add(b)` pass an
/// implicit alpha of 1; `square()` an exponent of 2; `arange(stop)` a start and a step). Each of these is a
/// native object freed by its finalizer, and a collection on another thread while libtorch reads it frees it
/// under libtorch's feet. Here every Scalar is either a process-lifetime constant (a static field keeps it
/// reachable, so it is never finalized) or a `using` local disposed after the native call has returned.
/// `Foundation/ScalarOwnershipTests` reads the compiled library and fails on any other way of making a Scalar.
public static class OwnedScalars
{
    private static readonly Scalar One = 1.ToScalar();
    private static readonly Scalar MinusOne = (-1).ToScalar();

    /// a + b.
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// a + alpha·b.
    public static Tensor Plus(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add(b, s);
    }

    /// a + b for a number b.
    public static Tensor Plus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.add(s, One);
    }

    /// a − b for a number b.
    public static Tensor Minus(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.sub(s);
    }

    /// b − a for a number b.
    public static Tensor SubtractedFrom(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.neg().add(s, One);
    }

    /// a · b for a number b.
    public static Tensor Times(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.mul(s);
    }

    /// a / b for a number b.
    public static Tensor DividedBy(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.div(s);
    }

    /// a² (as a · a: what `square()` computes, without its implicit exponent).
    public static Tensor Squared(this Tensor a) => a.mul(a);

    /// a^p for a number p.
    public static Tensor Power(this Tensor a, double p)
    {
        using var s = p.ToScalar();
        return a.pow(s);
    }

    /// a clamped to [min, max].
    public static Tensor Clamped(this Tensor a, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return a.clamp(lo, hi);
    }

    /// In place: a += alpha·b.
    public static Tensor AddInPlace(this Tensor a, Tensor b, double alpha = 1)
    {
        if (alpha == 1) return a.add_(b, One);
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// In place: a −= b.
    public static Tensor SubtractInPlace(this Tensor a, Tensor b) => a.add_(b, MinusOne);

    /// In place: a += b for a number b.
    public static Tensor AddInPlace(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.add_(s, One);
    }

    /// In place: a += b for a whole number b (integer tensors such as a batch counter).
    public static Tensor AddInPlace(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.add_(s, One);
    }

    /// In place: a ·= b for a number b.
    public static Tensor MultiplyInPlace(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.mul_(s);
    }

    /// In place: a /= b for a number b.
    public static Tensor DivideInPlace(this Tensor a, double b)
    {
        using var s = b.ToScalar();
        return a.div_(s);
    }

    /// In place: a += value · t1 · t2.
    public static Tensor AddProductInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcmul_(t1, t2, s);
    }

    /// In place: a += value · t1 / t2.
    public static Tensor AddQuotientInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcdiv_(t1, t2, s);
    }

    /// a == b elementwise, for a whole number b (token ids).
    public static Tensor EqualTo(this Tensor a, long b)
    {
        using var s = b.ToScalar();
        return a.eq(s);
    }

    /// a with `value` where `mask` is true.
    public static Tensor MaskedFill(this Tensor a, Tensor mask, double value)
    {
        using var s = value.ToScalar();
        return a.masked_fill(mask, s);
    }

    /// In place: every element of a set to `value`.
    public static Tensor FillInPlace(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.fill_(s);
    }

    /// [start, stop) in steps of 1.
    public static Tensor Arange(long start, long stop, ScalarType? dtype = null, Device? device = null)
    {
        using var from = start.ToScalar();
        using var to = stop.ToScalar();
        return torch.arange(from, to, One, dtype, device);
    }

    /// [start, stop) in steps of `step`.
    public static Tensor Arange(double start, double stop, double step, ScalarType? dtype = null, Device? device = null)
    {
        using var from = start.ToScalar();
        using var to = stop.ToScalar();
        using var by = step.ToScalar();
        return torch.arange(from, to, by, dtype, device);
    }

    /// A tensor of `shape` filled with `value`.
    public static Tensor Full(long[] shape, double value, ScalarType? dtype = null, Device? device = null)
    {
        using var s = value.ToScalar();
        return torch.full(shape, s, dtype, device);
    }
}
