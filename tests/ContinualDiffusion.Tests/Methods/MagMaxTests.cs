using ContinualDiffusion.Methods;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Methods;

public class MagMaxTests
{
    [Fact]
    public void Merge_keeps_the_larger_magnitude_and_the_new_delta_on_a_tie()
    {
        using var scope = torch.NewDisposeScope();
        var past = T(new float[,] { { 1, -3, 2 }, { 0.5f, -1, 0 } });
        var delta = T(new float[,] { { -2, 1, -2 }, { 0.25f, 4, -0.75f } });
        var pastBefore = past.clone();
        var deltaBefore = delta.clone();

        var merged = MagMax.Merge(past, delta);

        // [0,0] |−2| > |1| new; [0,1] |1| < |−3| past; [0,2] |−2| = |2| a tie: the NEW −2;
        // [1,0] |0.25| < |0.5| past; [1,1] |4| > |−1| new; [1,2] |−0.75| > |0| new.
        Fixture.AssertIdentical(merged, T(new float[,] { { -2, -3, -2 }, { 0.5f, 4, -0.75f } }), "max-magnitude merge");
        Fixture.AssertIdentical(past, pastBefore, "past input");
        Fixture.AssertIdentical(delta, deltaBefore, "delta input");
    }

    [Fact]
    public void Merge_returns_the_dtype_of_the_past_delta()
    {
        using var scope = torch.NewDisposeScope();
        var past = T(new float[,] { { 1, -1 } }).to_type(ScalarType.Float64);
        var delta = T(new float[,] { { 0.5f, -2 } });

        var merged = MagMax.Merge(past, delta);

        Assert.Equal(ScalarType.Float64, merged.dtype);
        Fixture.AssertIdentical(merged, torch.tensor(new double[,] { { 1, -2 } }), "mixed dtypes");
    }

    [Fact]
    public void MergeSequence_folds_the_merge_from_the_first_delta()
    {
        using var scope = torch.NewDisposeScope();
        var d1 = T(new float[,] { { 1, -1 }, { 0, 2 } });
        var d2 = T(new float[,] { { -2, 0.5f }, { 0, -2 } });
        var d3 = T(new float[,] { { 1.5f, 0.25f }, { -0.125f, 1 } });

        // M2 = Merge(d1, d2) = [[−2, −1], [0, −2]] (the [1,1] tie |−2| = |2| keeps d2's −2);
        // M3 = Merge(M2, d3) = [[−2, −1], [−0.125, −2]].
        var merged = MagMax.MergeSequence([d1, d2, d3]);
        Fixture.AssertIdentical(merged, T(new float[,] { { -2, -1 }, { -0.125f, -2 } }), "three tasks");
        Fixture.AssertIdentical(merged, MagMax.Merge(MagMax.Merge(d1, d2), d3), "left fold");

        var single = MagMax.MergeSequence([d1]);
        Fixture.AssertIdentical(single, d1, "one task");
        Assert.NotSame(d1, single);
    }

    [Fact]
    public void Mismatched_shapes_and_an_empty_sequence_are_refused()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.zeros(2, 3);
        var b = torch.zeros(3, 2);

        var e = Assert.Throws<ArgumentException>(() => MagMax.Merge(a, b));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[3, 2]", e.Message);
        var s = Assert.Throws<ArgumentException>(() => MagMax.MergeSequence([a, a, b]));
        Assert.Contains("[3, 2]", s.Message);
        Assert.Throws<ArgumentException>(() => MagMax.MergeSequence([]));
    }
}
