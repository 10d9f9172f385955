using ContinualDiffusion.Methods;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Methods;

public class OrthogonalInitTests
{
    [Fact]
    public void The_projected_down_factor_is_orthogonal_to_the_past_row_space_and_keeps_its_row_norms()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(3);
        var past = Randn(g, 8, 3).matmul(Randn(g, 3, 10)); // rank 3, [out = 8, in = 10]
        var down = Randn(g, 2, 10).Times(0.3);              // r = 2
        var downBefore = down.clone();
        var pastBefore = past.clone();

        var projected = OrthogonalInit.ProjectDown(down, past);

        Assert.Equal(new long[] { 2, 10 }, projected.shape);
        Assert.Equal(ScalarType.Float32, projected.dtype);
        double leak = Fro(past.matmul(projected.t()));
        Assert.True(leak < 1e-5 * Fro(past) * Fro(down), $"‖P Bᵀ‖ = {leak:E3}");
        AssertRowNorms(projected, down, 1e-5);
        Assert.True(Fro(projected.sub(down)) > 1e-3, "a random B has a component in the past row space, so it must move");
        Fixture.AssertIdentical(down, downBefore, "down input");
        Fixture.AssertIdentical(past, pastBefore, "past input");
    }

    [Fact]
    public void A_zero_past_leaves_the_down_factor_unchanged()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(4);
        var down = Randn(g, 2, 10);

        var projected = OrthogonalInit.ProjectDown(down, torch.zeros(8, 10));

        Fixture.AssertIdentical(projected, down, "task 1");
        Assert.NotSame(down, projected);
    }

    [Fact]
    public void When_the_past_spans_almost_every_input_direction_only_its_top_directions_are_avoided()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(5);
        // in = 6, r = 4, rank(P) = 4: the complement of P's row space has 2 < r dimensions, so only the top
        // in − r = 2 right singular directions of P are avoided and B keeps rank 4.
        var past = Randn(g, 5, 4).matmul(Randn(g, 4, 6));
        var down = Randn(g, 4, 6);
        Assert.Equal(4, torch.linalg.matrix_rank(past.to_type(ScalarType.Float64), atol: null, rtol: 1e-6).item<long>());

        var projected = OrthogonalInit.ProjectDown(down, past);

        var (_, _, vh) = torch.linalg.svd(past.to_type(ScalarType.Float64), fullMatrices: false);
        var top2 = vh.narrow(0, 0, 2);
        var projected64 = projected.to_type(ScalarType.Float64);
        double leak = Fro(projected64.matmul(top2.t()));
        Assert.True(leak < 1e-5 * Fro(projected64), $"‖B' V₂ᵀ‖ = {leak:E3}");
        Assert.Equal(4, torch.linalg.matrix_rank(projected64, atol: null, rtol: 1e-6).item<long>());
        AssertRowNorms(projected, down, 1e-5);
    }

    [Fact]
    public void A_row_inside_the_past_row_space_is_replaced_instead_of_left_dead()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(6);
        var past = torch.randn(new long[] { 8, 3 }, ScalarType.Float64, generator: g)
            .matmul(torch.randn(new long[] { 3, 10 }, ScalarType.Float64, generator: g));
        // Row 0 is a past row scaled: its projection is zero up to rounding. Row 1 is random.
        var down = torch.stack(new[] { past[0].Times(0.1), torch.randn(new long[] { 10 }, ScalarType.Float64, generator: g) });

        var projected = OrthogonalInit.ProjectDown(down, past);

        double leak = Fro(past.matmul(projected.t()));
        Assert.True(leak < 1e-10 * Fro(past) * Fro(down), $"‖P Bᵀ‖ = {leak:E3}");
        AssertRowNorms(projected, down, 1e-10);
        Assert.Equal(2, torch.linalg.matrix_rank(projected, atol: null, rtol: 1e-6).item<long>());
    }

    private static double Fro(Tensor t) => t.to_type(ScalarType.Float64).Squared().sum().sqrt().item<double>();

    private static void AssertRowNorms(Tensor actual, Tensor expected, double relTol)
    {
        var a = actual.to_type(ScalarType.Float64).Squared().sum(1).sqrt();
        var e = expected.to_type(ScalarType.Float64).Squared().sum(1).sqrt();
        Fixture.AssertClose(a, e, relTol, "row norms");
    }
}
