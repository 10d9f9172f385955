using ContinualDiffusion.Classification;
using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Classification;

/// L2P and CODA-Prompt (Classification/Methods/L2pLearner, CodaPromptLearner) on the tiny ViT.
public sealed class PromptLearnerTests
{
    private static readonly ClassifyOptions Quick = new() { Epochs = 1, BatchSize = 16, LearningRate = 1e-2 };

    private static LabeledImages Task1 => ClassifyTestData.Task1;
    private static LabeledImages Task2 => ClassifyTestData.Task2;

    private static ClassIncrementalLearner Create(string method, VisionTransformer vit, ClassifyOptions? options = null) =>
        ClassifyMethods.Create(method, vit, options ?? Quick);

    [Theory]
    [InlineData("l2p")]
    [InlineData("coda-prompt")]
    public void The_backbone_does_not_train_and_the_prompts_do(string method)
    {
        using var vit = ClassifyTestData.TinyVit();
        var initial = vit.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        using var learner = Create(method, vit);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);
        var prompts = learner.TrainableGroups().Single(g => g.Name == "prompts").Parameters.Select(p => p.detach().clone()).ToList();
        ClassTaskTrainer.LearnTask(learner, [5, 2], Task2);
        foreach (var (key, value) in vit.state_dict())
            Assert.True(value.detach().allclose(initial[key], 0, 0), $"{method}: {key} changed");
        var head = learner.TrainableGroups().Single(g => g.Name == "head");
        Assert.Equal(2, head.Parameters.Count);
        Assert.Same(learner.Head.Weight, head.Parameters[0]);
        Assert.Same(learner.Head.Bias, head.Parameters[1]);
        Assert.Equal(Quick.HeadLearningRate, head.LearningRate);
        Assert.Equal(Quick.LearningRate, learner.TrainableGroups().Single(g => g.Name == "prompts").LearningRate);
        if (method == "l2p") // one pool for every task: task 2 moved it
        {
            var after = learner.TrainableGroups().Single(g => g.Name == "prompts").Parameters;
            Assert.Contains(Enumerable.Range(0, after.Count), i => !after[i].detach().allclose(prompts[i], 0, 0));
        }
    }

    [Fact]
    public void L2p_selects_the_top_n_keys_by_cosine_similarity_and_pulls_them()
    {
        using var vit = ClassifyTestData.TinyVit();
        var options = Quick with { PoolSize = 6, TopN = 2, PromptLength = 3, PullWeight = 0.7 };
        using var learner = new L2pLearner(vit, options);
        learner.BeginTask([1, 8]);
        var x = ImageBatches.Pixels(Task1, [0, 30]);
        var query = learner.Query(x);
        Assert.False(query.requires_grad);
        Assert.True(query.allclose(vit.Features(x), 0, 0)); // the frozen backbone's class token, no prompt

        // Keys built from the first image's query q: k_m = w_m·q + d with d ⊥ q and |d| = |q|/2, so that
        // cos(q, k_m) = w_m / √(w_m² + 1/4) rises with w_m: keys 3 (w = 4) and 1 (w = 2) lead, in that order.
        int dim = vit.Config.EmbedDim;
        double[] w = [-1.0, 2.0, 0.3, 4.0, -3.0, 0.01];
        var q0 = query[0].data<float>().ToArray();
        var d = Enumerable.Range(0, dim).Select(i => (double)(i % 5) - 2).ToArray();
        double qq = q0.Sum(v => (double)v * v), dq = Enumerable.Range(0, dim).Sum(i => d[i] * q0[i]);
        for (int i = 0; i < dim; i++) d[i] -= dq / qq * q0[i];
        double scale = 0.5 * Math.Sqrt(qq) / Math.Sqrt(d.Sum(v => v * v));
        var keyValues = new float[w.Length * dim];
        for (int m = 0; m < w.Length; m++)
            for (int i = 0; i < dim; i++) keyValues[m * dim + i] = (float)(w[m] * q0[i] + scale * d[i]);
        using (torch.no_grad()) learner.Keys.copy_(torch.tensor(keyValues, [w.Length, dim]));

        var (cosines, selected) = learner.Select(query);
        Assert.Equal([2L, 2L], selected.shape);
        var q = query.data<float>().ToArray();
        var k = learner.Keys.detach().data<float>().ToArray();
        for (int b = 0; b < 2; b++)
        {
            var cos = Enumerable.Range(0, options.PoolSize).Select(m => Cosine(q.AsSpan(b * dim, dim), k.AsSpan(m * dim, dim))).ToArray();
            for (int m = 0; m < options.PoolSize; m++) Assert.Equal(cos[m], cosines[b, m].item<float>(), 1e-5);
            var expected = Enumerable.Range(0, options.PoolSize).OrderByDescending(m => cos[m]).Take(options.TopN).ToArray();
            Assert.Equal(expected.Select(m => (long)m), selected[b].data<long>().ToArray());
            if (b == 0) Assert.Equal([3, 1], expected); // the design above, checked by hand
        }

        // The selected prompts go in, in order, and the extra loss is λ · mean over the batch of Σ (1 − cos).
        var tokens = learner.SelectedPrompts(selected);
        Assert.Equal([2L, 2L * 3, dim], tokens.shape);
        Assert.Equal(4 / Math.Sqrt(16.25), cosines[0, 3].item<float>(), 1e-4);
        Assert.True(tokens[0].narrow(0, 0, 3).allclose(learner.Prompts[3], 0, 0));
        Assert.True(tokens[0].narrow(0, 3, 3).allclose(learner.Prompts[1], 0, 0));
        var (_, extra) = learner.TrainForward(x);
        double pull = Enumerable.Range(0, 2).Average(b => selected[b].data<long>().ToArray().Sum(m => 1 - cosines[b, m].item<float>()));
        Assert.Equal(0.7 * pull, extra!.item<float>(), 1e-5);
    }

    [Fact]
    public void Coda_alphas_are_cosines_of_the_attended_query_with_the_keys()
    {
        using var vit = ClassifyTestData.TinyVit();
        var options = Quick with { Components = 4, ExpectedTasks = 2, PromptLength = 2 };
        using var learner = new CodaPromptLearner(vit, options);
        learner.BeginTask([1, 8]);
        Assert.Equal(Math.Min(5, vit.Config.Depth), learner.PromptedBlocks);
        var x = ImageBatches.Pixels(Task1, [0, 30, 7]);
        var query = learner.Query(x);
        int dim = vit.Config.EmbedDim;
        var q = query.data<float>().ToArray();
        for (int block = 0; block < learner.PromptedBlocks; block++)
        {
            var (prompts, keys, attention) = learner.Components(block, 0);
            Assert.Equal([2L, 2L, dim], prompts.shape);
            var a = attention.detach().data<float>().ToArray();
            var k = keys.detach().data<float>().ToArray();
            var alphas = learner.Alphas(query, block);
            Assert.Equal([3L, 2L], alphas.shape);
            for (int b = 0; b < 3; b++)
                for (int m = 0; m < 2; m++)
                {
                    var attended = Enumerable.Range(0, dim).Select(i => (float)(q[b * dim + i] * a[m * dim + i])).ToArray();
                    double expected = Cosine(attended, k.AsSpan(m * dim, dim));
                    Assert.Equal(expected, alphas[b, m].item<float>(), 1e-5);
                }
            // p = Σ_m α_m P_m
            var prompt = learner.Prompt(query, block);
            var byHand = alphas[1, 0].mul(prompts[0]).Plus(alphas[1, 1].mul(prompts[1]));
            Assert.True(prompt[1].allclose(byHand, 1e-5, 1e-6));
        }
    }

    [Fact]
    public void Coda_new_components_start_orthogonal_to_the_frozen_ones_which_do_not_change()
    {
        using var vit = ClassifyTestData.TinyVit();
        var options = Quick with { Components = 6, ExpectedTasks = 2 }; // 3 per task; P rows are 8·16 wide
        using var learner = new CodaPromptLearner(vit, options);
        ClassTaskTrainer.LearnTask(learner, [1, 8], Task1);

        // Task 2 begins: its components are unit vectors orthogonal to task 1's (trained) ones and to each other.
        using (var g = new Generator(7)) learner.BeginTask([5, 2], g);
        Assert.Equal(2, learner.Slices);
        for (int block = 0; block < learner.PromptedBlocks; block++)
        {
            var (p1, k1, a1) = learner.Components(block, 0);
            var (p2, k2, a2) = learner.Components(block, 1);
            Assert.False(p1.requires_grad || k1.requires_grad || a1.requires_grad);
            foreach (var (old, fresh, kind) in new[] { (p1, p2, "P"), (k1, k2, "K"), (a1, a2, "A") })
            {
                var o = old.detach().reshape(3, -1);
                var n = fresh.detach().reshape(3, -1);
                var across = o.matmul(n.t()).abs().max().item<float>();
                Assert.True(across < 1e-5, $"block {block} {kind}: task 2 · task 1 up to {across:E2}");
                var gram = n.matmul(n.t()).sub(torch.eye(3));
                Assert.True(gram.abs().max().item<float>() < 1e-5, $"block {block} {kind}: task 2 is not orthonormal");
            }
        }

        // Training task 2 leaves task 1's components exactly as they were and moves task 2's.
        using var learner2 = new CodaPromptLearner(vit, options);
        ClassTaskTrainer.LearnTask(learner2, [1, 8], Task1);
        var before = Snapshot(learner2, 0);
        ClassTaskTrainer.LearnTask(learner2, [5, 2], Task2);
        var after = Snapshot(learner2, 0);
        for (int i = 0; i < before.Count; i++) Assert.True(after[i].allclose(before[i], 0, 0), $"task 1 component {i} changed while task 2 trained");
        // What trains is task 2's P, K and A of every prompted block, and training moved them off their orthonormal start.
        var trained = learner2.TrainableGroups().Single(g => g.Name == "prompts").Parameters;
        Assert.Equal(3 * learner2.PromptedBlocks, trained.Count);
        for (int b = 0; b < learner2.PromptedBlocks; b++)
        {
            var (p2, k2, a2) = learner2.Components(b, 1);
            Assert.Same(p2, trained[3 * b]);
            Assert.Same(k2, trained[3 * b + 1]);
            Assert.Same(a2, trained[3 * b + 2]);
        }
        Assert.Contains(trained, p =>
        {
            var rows = p.detach().reshape(3, -1);
            return rows.matmul(rows.t()).sub(torch.eye(3)).abs().max().item<float>() > 1e-4;
        });
    }

    [Fact]
    public void Coda_refuses_a_task_beyond_expected_tasks_and_bad_options()
    {
        using var vit = ClassifyTestData.TinyVit();
        using var learner = new CodaPromptLearner(vit, Quick with { Components = 4, ExpectedTasks = 2, PromptLength = 2 });
        learner.BeginTask([1]);
        learner.BeginTask([2]);
        var e = Assert.Throws<InputException>(() => learner.BeginTask([3]));
        Assert.Contains("ExpectedTasks", e.Message);
        Assert.Contains("ExpectedTasks", Assert.Throws<InputException>(() => new CodaPromptLearner(vit, Quick with { Components = 5, ExpectedTasks = 2 })).Message);
        Assert.Contains("PromptLength", Assert.Throws<InputException>(() => new CodaPromptLearner(vit, Quick with { PromptLength = 3 })).Message);
        Assert.Contains("TopN", Assert.Throws<InputException>(() => new L2pLearner(vit, Quick with { PoolSize = 3, TopN = 4 })).Message);
    }

    [Fact]
    public void Gram_schmidt_fills_the_space_then_keeps_the_new_vectors_orthogonal_to_each_other()
    {
        using var g = new Generator(3);
        var earlier = CodaPromptLearner.GramSchmidt.NewOrthonormal([], 3, 4, g);
        var gram = earlier.matmul(earlier.t()).sub(torch.eye(3));
        Assert.True(gram.abs().max().item<float>() < 1e-6);
        // Only one direction of R^4 is left: the first new vector takes it, the next two are orthogonal to it and
        // to each other (but cannot be to the earlier three).
        var fresh = CodaPromptLearner.GramSchmidt.NewOrthonormal([earlier], 3, 4, g);
        Assert.True(earlier.matmul(fresh[0]).abs().max().item<float>() < 1e-6);
        var own = fresh.matmul(fresh.t()).sub(torch.eye(3));
        Assert.True(own.abs().max().item<float>() < 1e-6);
    }

    private static List<Tensor> Snapshot(CodaPromptLearner learner, int task) =>
        [.. Enumerable.Range(0, learner.PromptedBlocks).SelectMany(b =>
        {
            var (p, k, a) = learner.Components(b, task);
            return new[] { p.detach().clone(), k.detach().clone(), a.detach().clone() };
        })];

    private static double Cosine(ReadOnlySpan<float> u, ReadOnlySpan<float> v)
    {
        double dot = 0, uu = 0, vv = 0;
        for (int i = 0; i < u.Length; i++) { dot += (double)u[i] * v[i]; uu += (double)u[i] * u[i]; vv += (double)v[i] * v[i]; }
        return dot / Math.Sqrt(uu * vv);
    }
}
