using ContinualDiffusion.Lora;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Lora;

public class SelfRegularizerTests
{
    [Fact]
    public void Penalty_is_zero_for_the_first_task()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(2);
        var k = new ContinualLoraLinear("a.to_k", LinearWith(Randn(g, 3, 4)), rank: 2, generator: g);
        var v = new ContinualLoraLinear("a.to_v", LinearWith(Randn(g, 3, 4)), rank: 2, generator: g);
        SetFactors(k, Randn(g, 3, 2), Randn(g, 2, 4)); // a trained-looking, non-zero current delta
        SetFactors(v, Randn(g, 3, 2), Randn(g, 2, 4));

        Assert.True(k.PastDeltaIsZero);
        Assert.Equal(0f, SelfRegularizer.Penalty([k, v]).item<float>());
        Assert.Equal(0f, SelfRegularizer.LayerPenalty(k).item<float>()); // the formula itself, not just the skip
        Assert.Equal(0f, SelfRegularizer.Penalty([]).item<float>());
    }

    [Fact]
    public void Penalty_equals_a_hand_computed_value_at_task_2()
    {
        using var scope = torch.NewDisposeScope();
        // Layer to_k, weight 2x3. Task 1: A1 = [1; 2], B1 = [1 -1 0.5]
        //   P = A1 B1 = [[1, -1, 0.5], [2, -2, 1]],  |P| = [[1, 1, 0.5], [2, 2, 1]]
        // Task 2 (current): A2 = [1; -1], B2 = [2 0 1]
        //   D = A2 B2 = [[2, 0, 1], [-2, 0, -1]]
        //   |P| ⊙ D = [[2, 0, 0.5], [-4, 0, -1]]  →  ‖·‖²_F = 4 + 0 + 0.25 + 16 + 0 + 1 = 21.25
        // Layer to_v. Task 1: A1 = [1; 0], B1 = [0 3 0] → P = [[0, 3, 0], [0, 0, 0]]
        //   Task 2: A2 = [2; 5], B2 = [1 1 1] → D = [[2, 2, 2], [5, 5, 5]]; |P| ⊙ D = [[0, 6, 0], [0, 0, 0]] → 36
        // Total 57.25.
        var w = torch.zeros(2, 3);
        var weights = new Dictionary<string, Tensor> { ["b.to_k"] = w, ["b.to_v"] = w };
        using var task1 = Adapter(1, new Dictionary<string, (Tensor, Tensor)>
        {
            ["b.to_k"] = (T(new float[,] { { 1 }, { 2 } }), T(new float[,] { { 1, -1, 0.5f } })),
            ["b.to_v"] = (T(new float[,] { { 1 }, { 0 } }), T(new float[,] { { 0, 3, 0 } })),
        });
        var past = DeltaMerger.SumDeltas(weights, [task1]);
        var k = new ContinualLoraLinear("b.to_k", LinearWith(w), rank: 1, pastDelta: past["b.to_k"]);
        var v = new ContinualLoraLinear("b.to_v", LinearWith(w), rank: 1, pastDelta: past["b.to_v"]);
        SetFactors(k, T(new float[,] { { 1 }, { -1 } }), T(new float[,] { { 2, 0, 1 } }));
        SetFactors(v, T(new float[,] { { 2 }, { 5 } }), T(new float[,] { { 1, 1, 1 } }));

        Assert.Equal(21.25f, SelfRegularizer.LayerPenalty(k).item<float>(), 5);
        Assert.Equal(36f, SelfRegularizer.LayerPenalty(v).item<float>(), 5);
        var penalty = SelfRegularizer.Penalty([k, v]);
        Assert.Equal(57.25f, penalty.item<float>(), 5);

        // Its gradient w.r.t. to_k's A: ∂/∂a_i Σ_j p_ij² (a_i b_j)² = 2 a_i Σ_j p_ij² b_j²
        //   a_0: 2·1·(1·4 + 1·0 + 0.25·1) = 8.5;   a_1: 2·(-1)·(4·4 + 4·0 + 1·1) = -34
        penalty.backward();
        Assert.Equal(8.5f, k.LoraA.grad![0, 0].item<float>(), 4);
        Assert.Equal(-34f, k.LoraA.grad![1, 0].item<float>(), 4);
    }
}
