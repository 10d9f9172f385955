using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Lora;

public class TextAnchorTests
{
    private static ContinualLoraLinear Layer(Generator g, Tensor a, Tensor b)
    {
        var attention = new FakeAttention(3, 4, g);
        var layer = LoraInjector.Inject(LoraTarget.KeyValue("attn2", attention.to_k, attention.to_v, attention.ReplaceProjection), rank: 2, generator: g)[0];
        SetFactors(layer, a, b);
        return layer;
    }

    [Fact]
    public void Penalty_is_the_mean_squared_output_change_per_group_summed()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(3);
        var a = torch.tensor(new float[] { 1, 0, 0, 2, 1, 1 }).reshape(3, 2);
        var b = torch.tensor(new float[] { 1, 0, 0, 0, 0, 1, 0, 0 }).reshape(2, 4);
        var layer = Layer(g, a, b);
        var c1 = torch.tensor(new float[] { 1, 0, 0, 0, 0, 1, 0, 0 }).reshape(2, 4);   // e1, e2
        var c2 = torch.tensor(new float[] { 0, 0, 0, 3 }).reshape(1, 4);               // 3·e4: unused by B
        using var anchor = new TextAnchor([c1, c2]);
        // A·B maps e1 → A[:,0] = (1,0,1), e2 → A[:,1] = (0,2,1): group 1 = (2 + 5) / 2 rows; group 2: B·e4 = 0.
        Assert.Equal(3.5, anchor.Penalty([layer]).item<float>(), 5);
    }

    [Fact]
    public void Penalty_sums_over_layers_and_groups()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(5);
        var layers = new[] { Layer(g, Randn(g, 3, 2), Randn(g, 2, 4)), Layer(g, Randn(g, 3, 2), Randn(g, 2, 4)) };
        var c1 = Randn(g, 2, 4);
        var c2 = Randn(g, 5, 4);
        using var both = new TextAnchor([c1, c2]);
        double expected = 0;
        foreach (var l in layers)
            foreach (var c in new[] { c1, c2 })
                expected += l.LoraA.matmul(l.LoraB).matmul(c.t()).Squared().sum().item<float>() / c.shape[0];
        Assert.Equal(expected, both.Penalty(layers).item<float>(), 4);
    }

    [Fact]
    public void Directions_no_anchored_prompt_uses_are_free()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(4);
        var layer = Layer(g, Randn(g, 3, 2), Randn(g, 2, 4));
        using var anchor = new TextAnchor([torch.tensor(new float[] { 1, 0, 0, 0, 0, 1, 0, 0 }).reshape(2, 4)]);
        var penalty = anchor.Penalty([layer]);
        penalty.backward();
        var gradB = layer.LoraB.grad!;
        // Only inputs 1 and 2 are anchored: B's columns 3 and 4 get no gradient, columns 1 and 2 do.
        Assert.Equal(0, gradB.slice(1, 2, 4, 1).abs().max().item<float>());
        Assert.True(gradB.slice(1, 0, 2, 1).abs().max().item<float>() > 0);
    }
}
