using System.Text.Json;
using ContinualDiffusion.Checkpoints;
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
    private static readonly Lazy<JsonDocument> _json = new(() => JsonDocument.Parse(QuoteNonFiniteNumbers(File.ReadAllText(Path.Combine(SdTiny, "reference.json")))));

    public static JsonElement ReferenceJson => _json.Value.RootElement;

    /// One reference tensor (a fresh copy: dispose it or read it inside a dispose scope).
    public static Tensor Ref(string name) => _reference.Value.Read(name);

    /// Python's json writes -Infinity / Infinity / NaN bare (e.g. dpmpp2m lambda_min_clipped), which JsonDocument
    /// rejects; they become the strings "-Infinity" / "Infinity" / "NaN" (read them with GetString()).
    private static string QuoteNonFiniteNumbers(string json) =>
        System.Text.RegularExpressions.Regex.Replace(json, @"(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])", "\"$1\"");

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

    public static void AssertClose(Tensor actual, Tensor expected, double relTol = ParityRelTol, string what = "")
    {
        double err = RelError(actual, expected);
        Assert.True(err <= relTol, $"{what}: relative error {err:E3} exceeds {relTol:E1}");
    }
}
