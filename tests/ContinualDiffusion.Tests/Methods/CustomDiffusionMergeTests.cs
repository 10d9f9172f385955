using ContinualDiffusion.Methods;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Methods;

public class CustomDiffusionMergeTests
{
    /// W0 [3, 4], C [2, 4], V [2, 3], C_reg [6, 4]: random, from one seeded generator.
    private static (Tensor W0, Tensor C, Tensor V, Tensor CReg) Problem(Generator g, ScalarType dtype) =>
        (torch.randn(new long[] { 3, 4 }, dtype, generator: g),
         torch.randn(new long[] { 2, 4 }, dtype, generator: g),
         torch.randn(new long[] { 2, 3 }, dtype, generator: g),
         torch.randn(new long[] { 6, 4 }, dtype, generator: g));

    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.Float64, 1e-10)]
    public void The_merged_weight_meets_every_target(ScalarType dtype, double tolerance)
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(21);
        var (w0, c, v, cReg) = Problem(g, dtype);
        var before = new[] { w0.clone(), c.clone(), v.clone(), cReg.clone() };

        var w = CustomDiffusionMerge.Merge(w0, c, v, cReg);

        Assert.Equal(dtype, w.dtype);
        Assert.Equal(w0.shape, w.shape);
        double scale = Math.Max(1, v.abs().max().to_type(ScalarType.Float64).item<double>());
        double error = MaxAbs(F64(w).matmul(F64(c).t()), F64(v).t());
        Assert.True(error < tolerance * scale, $"max |W Cᵀ − Vᵀ| = {error:E3} (scale {scale:F2})");
        Assert.True(MaxAbs(w, w0) > 1e-2, "random targets must move the weight");
        Fixture.AssertIdentical(w0, before[0], "W0 input");
        Fixture.AssertIdentical(c, before[1], "C input");
        Fixture.AssertIdentical(v, before[2], "V input");
        Fixture.AssertIdentical(cReg, before[3], "C_reg input");
    }

    [Fact]
    public void Targets_the_base_weight_already_meets_leave_it_unchanged()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(22);
        var (w0, c, _, cReg) = Problem(g, ScalarType.Float32);
        var v = c.matmul(w0.t()); // V = C W0ᵀ

        var w = CustomDiffusionMerge.Merge(w0, c, v, cReg);

        double change = MaxAbs(w, w0);
        Assert.True(change < 1e-6, $"max |W − W0| = {change:E3}");
    }

    [Fact]
    public void No_feasible_direction_brings_the_regularisation_outputs_closer_to_the_base()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(23);
        var (w0, c, v, cReg) = Problem(g, ScalarType.Float64);
        var w = CustomDiffusionMerge.Merge(w0, c, v, cReg);

        // E = R (I − Cᵀ (C Cᵀ)⁻¹ C): a random direction with E Cᵀ = 0, so W + εE meets the targets too.
        var projector = torch.eye(4, dtype: ScalarType.Float64).sub(c.t().matmul(torch.linalg.solve(c.matmul(c.t()), c)));
        var e = torch.randn(new long[] { 3, 4 }, ScalarType.Float64, generator: g).matmul(projector);
        Assert.True(e.matmul(c.t()).abs().max().item<double>() < 1e-12, "E Cᵀ = 0");

        double best = Objective(w, w0, cReg);
        foreach (double epsilon in new[] { 1e-2, -1e-2 })
        {
            var moved = w.Plus(e, epsilon);
            double other = Objective(moved, w0, cReg);
            Assert.True(other >= best, $"ε = {epsilon}: ‖(W + εE − W0) C_regᵀ‖ = {other:R} < {best:R}");
        }
    }

    [Fact]
    public void Singular_systems_are_refused_with_the_reason()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(24);
        var (w0, c, v, _) = Problem(g, ScalarType.Float32);

        // m = 3 < in = 4 regularisation rows: C_regᵀ C_reg has rank 3, the ridge decides the fourth direction and
        // the targets are still met.
        var fewRegularisation = Randn(g, 3, 4);
        var merged = CustomDiffusionMerge.Merge(w0, c, v, fewRegularisation);
        Assert.True(merged.matmul(c.t()).allclose(v.t(), rtol: 0, atol: 1e-4), "the constraint holds with a rank-deficient C_reg");
        // No regularisation signal at all: refused.
        var gram = Assert.Throws<InvalidOperationException>(() => CustomDiffusionMerge.Merge(w0, c, v, torch.zeros(3, 4)));
        Assert.Contains("C_regᵀ C_reg", gram.Message);

        // The same target feature twice: d Cᵀ has two equal rows.
        var duplicated = torch.cat(new[] { c, c.narrow(0, 0, 1) }, 0);
        var outputs = torch.cat(new[] { v, v.narrow(0, 0, 1) }, 0);
        var system = Assert.Throws<InvalidOperationException>(() => CustomDiffusionMerge.Merge(w0, duplicated, outputs, Randn(g, 6, 4)));
        Assert.Contains("d Cᵀ", system.Message);
        Assert.Contains(nameof(CustomDiffusionMerge.RemoveDuplicateRows), system.Message);
    }

    [Fact]
    public void Mismatched_shapes_are_refused_with_the_shapes_named()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(25);
        var (w0, c, v, cReg) = Problem(g, ScalarType.Float32);

        var features = Assert.Throws<ArgumentException>(() => CustomDiffusionMerge.Merge(w0, Randn(g, 2, 5), v, cReg));
        Assert.Contains("[2, 5]", features.Message);
        Assert.Contains("[3, 4]", features.Message);
        var outputs = Assert.Throws<ArgumentException>(() => CustomDiffusionMerge.Merge(w0, c, Randn(g, 2, 4), cReg));
        Assert.Contains("[2, 4]", outputs.Message);
        var regularisation = Assert.Throws<ArgumentException>(() => CustomDiffusionMerge.Merge(w0, c, v, Randn(g, 6, 3)));
        Assert.Contains("[6, 3]", regularisation.Message);
    }

    [Fact]
    public void RemoveDuplicateRows_drops_exact_repeats_of_earlier_rows_from_both_tensors()
    {
        using var scope = torch.NewDisposeScope();
        var features = T(new float[,] { { 1, 2, 3 }, { 4, 5, 6 }, { 1, 2, 3 }, { 4, 5, 6.0001f } });
        var outputs = T(new float[,] { { 10, 11 }, { 20, 21 }, { 30, 31 }, { 40, 41 } });

        var (keptFeatures, keptOutputs) = CustomDiffusionMerge.RemoveDuplicateRows(features, outputs);

        // Row 2 repeats row 0 exactly and goes; row 3 differs from row 1 in one value and stays.
        Fixture.AssertIdentical(keptFeatures, T(new float[,] { { 1, 2, 3 }, { 4, 5, 6 }, { 4, 5, 6.0001f } }), "features");
        Fixture.AssertIdentical(keptOutputs, T(new float[,] { { 10, 11 }, { 20, 21 }, { 40, 41 } }), "outputs");
        Assert.Equal(4, features.shape[0]);
    }

    private static Tensor F64(Tensor t) => t.to_type(ScalarType.Float64);

    private static double MaxAbs(Tensor a, Tensor b) => F64(a).sub(F64(b)).abs().max().item<double>();

    /// ‖(W − W0) C_regᵀ‖_F.
    private static double Objective(Tensor w, Tensor w0, Tensor cReg) =>
        w.sub(w0).matmul(cReg.t()).Squared().sum().sqrt().item<double>();
}
