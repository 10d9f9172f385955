using ContinualDiffusion.Interop.Export;

namespace ContinualDiffusion.Tests.Interop.Export;

/// kohya writes its metadata as Python's str() of each value: the expected strings are what CPython 3 prints.
public class KohyaTrainingMetadataTests
{
    [Theory]
    [InlineData(0.0005, "0.0005")]
    [InlineData(5e-05, "5e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(1e-05, "1e-05")]
    [InlineData(1e8, "100000000.0")]
    [InlineData(1.0, "1.0")]
    [InlineData(5.0, "5.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(0.05, "0.05")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(1.5e-07, "1.5e-07")]
    [InlineData(2.5e20, "2.5e+20")]
    [InlineData(1.0 / 3, "0.3333333333333333")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(1712345678.123, "1712345678.123")]
    [InlineData(123456789012345678.0, "1.2345678901234568e+17")]
    [InlineData(1e-100, "1e-100")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(0.0, "0.0")]
    [InlineData(120.0, "120.0")]
    [InlineData(0.00012, "0.00012")]
    public void Floats_read_as_Python_prints_them(double value, string python) =>
        Assert.Equal(python, KohyaTrainingMetadata.PythonFloat(value));
}
