using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Support;

/// The sd-tiny reference produced by diffusers 0.27.2 / transformers 4.40 (tests/fixtures/sd-tiny/reference.json).
public static class Fixture
{
    /// Relative error bound for fp32 parity with diffusers, as issue #3 states it.
    public const double ParityRelTol = 1e-4;

    public static string Root { get; } = FindRoot();
    public static string SdTiny => Path.Combine(Root, "tests", "fixtures", "sd-tiny");

    private static readonly Lazy<SafeTensorsFile> _reference = new(() => SafeTensorsFile.Open(Path.Combine(SdTiny, "reference.safetensors")));
    private static readonly Lazy<JsonDocument> _json = new(() => JsonDocument.Parse(PythonJson.QuoteNonFiniteNumbers(File.ReadAllText(Path.Combine(SdTiny, "reference.json")))));

    /// reference.json was written by Python's json module, which writes -Infinity bare; quoted before parsing.
    public static JsonElement ReferenceJson => _json.Value.RootElement;

    /// One reference tensor (a fresh copy: dispose it or read it inside a dispose scope).
    public static Tensor Ref(string name) => _reference.Value.Read(name);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ContinualDiffusion.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root (ContinualDiffusion.sln) above " + AppContext.BaseDirectory);
    }

    /// max|a-b| / max(max|b|, 1e-12): the relative error used for all parity checks.
    public static double RelError(Tensor actual, Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(expected.shape, actual.shape);
        double diff = (actual.to_type(ScalarType.Float64) - expected.to_type(ScalarType.Float64)).abs().max().item<double>();
        double scale = Math.Max(expected.to_type(ScalarType.Float64).abs().max().item<double>(), 1e-12);
        return diff / scale;
    }

    /// The same shape and bit-identical values (TorchSharp's `Tensor.equal` is elementwise, unlike torch.equal).
    public static void AssertIdentical(Tensor actual, Tensor expected, string what = "")
    {
        Assert.True(actual.shape.SequenceEqual(expected.shape), $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        Assert.True(actual.eq(expected).all().item<bool>(), $"{what}: values differ");
    }

    public static void AssertClose(Tensor actual, Tensor expected, double relTol = ParityRelTol, string what = "")
    {
        double err = RelError(actual, expected);
        Assert.True(err <= relTol, $"{what}: relative error {err:E3} exceeds {relTol:E1}");
    }
}
