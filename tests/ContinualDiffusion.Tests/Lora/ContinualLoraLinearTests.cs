using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Lora;

public class ContinualLoraLinearTests
{
    [Fact]
    public void A_fresh_adapter_leaves_the_output_unchanged()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(11);
        var w = Randn(g, 4, 6);
        var x = Randn(g, 2, 3, 6);
        var baseLayer = LinearWith(w);
        var expected = baseLayer.forward(x);

        var layer = new ContinualLoraLinear("attn2.to_k", baseLayer, rank: 2, generator: g);
        // Up factor A starts at zero, down factor B is U(-1/√in, 1/√in) and not zero.
        Assert.Equal(0, layer.LoraA.count_nonzero().item<long>());
        Assert.Equal(new long[] { 4, 2 }, layer.LoraA.shape);
        Assert.Equal(new long[] { 2, 6 }, layer.LoraB.shape);
        Assert.True(layer.LoraB.abs().max().item<float>() <= 1 / Math.Sqrt(6));
        Assert.Equal(12, layer.LoraB.count_nonzero().item<long>());

        var actual = layer.forward(x);
        Assert.Equal(0f, (actual - expected).abs().max().item<float>()); // task 1: exactly the base layer

        // At a later task a fresh adapter reproduces the merged past: x (W + P)ᵀ.
        var past = Randn(g, 4, 6).Times(0.1f);
        var later = new ContinualLoraLinear("attn2.to_k", LinearWith(w), rank: 2, pastDelta: past, generator: g);
        Fixture.AssertClose(later.forward(x), nn.functional.linear(x, w.Plus(past)), 1e-6, "fresh adapter over a past delta");
    }

    [Fact]
    public void Gradients_reach_only_the_current_factors()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(5);
        var w = Randn(g, 3, 5);
        var bias = Randn(g, 3);
        var past = Randn(g, 3, 5).Times(0.1f);
        var baseLayer = LinearWith(w, bias);
        var layer = new ContinualLoraLinear("to_v", baseLayer, rank: 2, pastDelta: past, generator: g);
        SetFactors(layer, Randn(g, 3, 2), Randn(g, 2, 5)); // A ≠ 0 so both factors get a non-zero gradient
        var weightBefore = baseLayer.weight!.detach().clone();
        var pastBefore = layer.PastDelta.clone();

        var loss = layer.forward(Randn(g, 4, 5)).Squared().sum().Plus(SelfRegularizer.Penalty([layer]));
        loss.backward();

        Assert.Null(baseLayer.weight!.grad);
        Assert.Null(baseLayer.bias!.grad);
        Assert.False(layer.PastDelta.requires_grad);
        Assert.Null(layer.PastDelta.grad);
        Assert.True(layer.LoraA.grad!.abs().sum().item<float>() > 0);
        Assert.True(layer.LoraB.grad!.abs().sum().item<float>() > 0);
        var trainable = LoraInjector.TrainableParameters([layer]).ToList();
        Assert.Equal(2, trainable.Count);
        Assert.Equal(trainable, layer.parameters().Where(p => p.requires_grad).ToList());

        // One optimiser step moves only A and B.
        var a0 = layer.LoraA.detach().clone();
        var sgd = torch.optim.SGD(trainable, 0.1);
        sgd.step();
        Assert.True(baseLayer.weight!.equal(weightBefore).all().item<bool>());
        Assert.True(layer.PastDelta.equal(pastBefore).all().item<bool>());
        Assert.False(layer.LoraA.equal(a0).all().item<bool>());
    }

    [Fact]
    public void Merged_weights_equal_the_low_rank_paths_evaluated_on_the_fly()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(7);
        var w = Randn(g, 4, 5);
        var x = Randn(g, 3, 5);
        var (a1, b1) = (Randn(g, 4, 2), Randn(g, 2, 5));
        var (a2, b2) = (Randn(g, 4, 2), Randn(g, 2, 5));
        // On the fly: the frozen layer plus one low-rank path per task.
        var onTheFly = nn.functional.linear(x, w)
            .Plus(nn.functional.linear(nn.functional.linear(x, b1), a1))
            .Plus(nn.functional.linear(nn.functional.linear(x, b2), a2));

        // Training task 2: past from the task-1 file contents, current factors = task 2's.
        var weights = new Dictionary<string, Tensor> { ["l.to_k"] = w };
        using var task1 = Adapter(1, new Dictionary<string, (Tensor, Tensor)> { ["l.to_k"] = (a1, b1) });
        using var task2 = Adapter(2, new Dictionary<string, (Tensor, Tensor)> { ["l.to_k"] = (a2, b2) });
        var past = DeltaMerger.SumDeltas(weights, [task1])["l.to_k"];
        var layer = new ContinualLoraLinear("l.to_k", LinearWith(w), rank: 2, pastDelta: past);
        SetFactors(layer, a2, b2);
        Fixture.AssertClose(layer.forward(x), onTheFly, 1e-6, "training forward at task 2");
        Fixture.AssertClose(layer.MergedWeight(), w.Plus(a1.matmul(b1)).Plus(a2.matmul(b2)), 1e-6, "MergedWeight");
        Fixture.AssertClose(layer.CurrentDelta(), a2.matmul(b2), 1e-6, "CurrentDelta");

        // Sampling: both tasks merged into a plain Linear's weight in place.
        var plain = LinearWith(w);
        DeltaMerger.MergeInto(new Dictionary<string, Tensor> { ["l.to_k"] = plain.weight! }, [task2, task1]);
        Fixture.AssertClose(plain.forward(x), onTheFly, 1e-6, "merged Linear");
    }

    [Fact]
    public void Per_step_cost_does_not_depend_on_the_number_of_past_tasks()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(3);
        var w = Randn(g, 6, 4);
        var weights = new Dictionary<string, Tensor> { ["l.to_v"] = w };
        var x = Randn(g, 2, 4);

        ContinualLoraLinear LayerAfter(int pastTasks)
        {
            var adapters = Enumerable.Range(1, pastTasks).Select(t => Adapter(t, RandomFactors(g, weights, 2))).ToList();
            var past = DeltaMerger.SumDeltas(weights, adapters)["l.to_v"];
            var layer = new ContinualLoraLinear("l.to_v", LinearWith(w), rank: 2, pastDelta: past, generator: g);
            SetFactors(layer, Randn(g, 6, 2), Randn(g, 2, 4));
            foreach (var a in adapters) a.Dispose();
            return layer;
        }

        var layers = new[] { 1, 2, 8 }.Select(LayerAfter).ToList();
        foreach (var layer in layers)
        {
            // The same state whatever T: the frozen weight, ONE dense past delta, the current factors.
            Assert.Equal(["weight", "lora_A", "lora_B"], layer.named_parameters().Select(p => p.name).ToArray());
            Assert.Empty(layer.named_buffers());
            Assert.Empty(layer.children()); // the replaced Linear is held, not registered twice
            Assert.Equal(new long[] { 6, 4 }, layer.PastDelta.shape);
            Assert.False(layer.PastDeltaIsZero);
            // The same work: count the tensors forward and the penalty create.
            Assert.Equal(TensorsCreatedBy(() => layers[0].forward(x)), TensorsCreatedBy(() => layer.forward(x)));
            Assert.Equal(TensorsCreatedBy(() => SelfRegularizer.Penalty([layers[0]])), TensorsCreatedBy(() => SelfRegularizer.Penalty([layer])));
        }
        // And the count is that of four ops (three linears and an add), also at task 1.
        var first = new ContinualLoraLinear("l.to_v", LinearWith(w), rank: 2);
        Assert.Equal(4L, TensorsCreatedBy(() => first.forward(x)));
        Assert.Equal(4L, TensorsCreatedBy(() => layers[2].forward(x)));
    }

    /// How many tensors a step creates (each op creates its result; intermediates disposed early still count).
    private static long TensorsCreatedBy(Func<Tensor> step)
    {
        using var inner = torch.NewDisposeScope();
        var stats = DisposeScopeManager.Statistics.TensorStatistics;
        long before = stats.CreatedInScopeCount;
        step();
        return stats.CreatedInScopeCount - before;
    }

    [Fact]
    public void Injection_keeps_checkpoint_names_and_adds_only_the_factors()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(9);
        var attn = new FakeAttention(dim: 6, contextDim: 4, g);
        var ctx = Randn(g, 1, 3, 4);
        var before = attn.forward(ctx);
        var targets = LoraTarget.KeyValue("mid_block.attentions.0.transformer_blocks.0.attn2", attn.to_k, attn.to_v, attn.ReplaceProjection);

        var layers = LoraInjector.Inject(targets, rank: 2, generator: g);

        Assert.Equal(["mid_block.attentions.0.transformer_blocks.0.attn2.to_k", "mid_block.attentions.0.transformer_blocks.0.attn2.to_v"],
            layers.Select(l => l.LayerName).ToArray());
        Assert.Same(layers[0], attn.to_k);
        Assert.Equal(["to_k.weight", "to_k.lora_A", "to_k.lora_B", "to_v.weight", "to_v.lora_A", "to_v.lora_B"],
            attn.named_parameters().Select(p => p.name).ToArray());
        Assert.Empty(attn.named_buffers());
        Assert.Equal(["to_k.lora_A", "to_k.lora_B", "to_k.weight", "to_v.lora_A", "to_v.lora_B", "to_v.weight"],
            attn.state_dict().Keys.Order(StringComparer.Ordinal).ToArray());
        Assert.Equal(0f, (attn.forward(ctx) - before).abs().max().item<float>());
        var again = Assert.Throws<InvalidOperationException>(() => LoraTarget.KeyValue("p", attn.to_k, attn.to_v, attn.ReplaceProjection));
        Assert.Contains("p.to_k", again.Message);
    }

    [Fact]
    public void Layer_state_outlives_the_dispose_scope_it_was_built_in()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(17);
        var w = Randn(g, 4, 3);
        var past = Randn(g, 4, 3);
        var x = Randn(g, 2, 3);
        ContinualLoraLinear layer;
        using (torch.NewDisposeScope())
        {
            layer = new ContinualLoraLinear("s.to_k", LinearWith(w), rank: 2, pastDelta: past, generator: g);
            layer.forward(x); // a forward inside a per-step scope must not leave the module's cache in that scope
        }
        Fixture.AssertClose(layer.forward(x), nn.functional.linear(x, w.Plus(past)), 1e-6, "after the building scope ended");
        Assert.Equal(0, layer.LoraA.count_nonzero().item<long>());
        Assert.Equal(6, layer.LoraB.count_nonzero().item<long>());
        Assert.Equal(0f, SelfRegularizer.Penalty([layer]).item<float>()); // A = 0, so zero even with a past
    }

    [Fact]
    public void Moving_the_module_moves_the_frozen_past_too()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(19);
        var w = Randn(g, 4, 3);
        var past = Randn(g, 4, 3);
        var x = Randn(g, 2, 3);
        var layer = new ContinualLoraLinear("m.to_v", LinearWith(w), rank: 1, pastDelta: past, generator: g);
        SetFactors(layer, Randn(g, 4, 1), Randn(g, 1, 3));
        var expected = layer.forward(x).to_type(ScalarType.Float64);

        layer.to(ScalarType.Float64);

        Assert.Equal(ScalarType.Float64, layer.LoraA.dtype);
        Assert.Equal(ScalarType.Float64, layer.PastDelta.dtype);
        Fixture.AssertClose(layer.forward(x.to_type(ScalarType.Float64)), expected, 1e-6, "after .to(Float64)");
        Assert.Equal(2, layer.parameters().Count(p => p.requires_grad)); // the weight stays frozen after the move
        Assert.All(LoraInjector.TrainableParameters([layer]), p => Assert.Equal(ScalarType.Float64, p.dtype));
    }

    [Fact]
    public void Past_deltas_must_cover_exactly_the_targets()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(1);
        var attn = new FakeAttention(dim: 6, contextDim: 4, g);
        var targets = LoraTarget.KeyValue("a", attn.to_k, attn.to_v, attn.ReplaceProjection);
        var onlyK = new Dictionary<string, Tensor> { ["a.to_k"] = torch.zeros(6, 4) };
        var e = Assert.Throws<ArgumentException>(() => LoraInjector.Inject(targets, 2, onlyK));
        Assert.Contains("a.to_v", e.Message);
        Assert.IsNotType<ContinualLoraLinear>(attn.to_k); // nothing was replaced
        var wrongShape = new Dictionary<string, Tensor> { ["a.to_k"] = torch.zeros(6, 4), ["a.to_v"] = torch.zeros(4, 6) };
        Assert.Contains("a.to_v", Assert.Throws<ArgumentException>(() => LoraInjector.Inject(targets, 2, wrongShape)).Message);
        Assert.IsNotType<ContinualLoraLinear>(attn.to_k);
    }
}
