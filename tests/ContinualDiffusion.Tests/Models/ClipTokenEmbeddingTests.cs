using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Concept-token rows: growing the embedding, reading/writing rows, and training one row through overrides.
public class ClipTokenEmbeddingTests
{
    private static ClipTextModel LoadTiny() => ClipTextModel.FromPretrained(Path.Combine(Fixture.SdTiny, "text_encoder"));

    private static Tensor TokenWeight(ClipTextModel m) =>
        m.named_parameters().Single(p => p.name == "text_model.embeddings.token_embedding.weight").parameter;

    /// "a photo of <new>" padded with eos, as the tokenizer would produce it for the first concept token.
    private static Tensor PromptWith(long conceptId) =>
        torch.tensor(new long[] { 49406, 320, 1125, 539, conceptId, 49407, 49407, 49407 }, new long[] { 1, 8 }, ScalarType.Int64);

    [Fact]
    public void Resize_keeps_existing_rows_exactly_and_adds_random_rows_of_similar_scale()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        var before = TokenWeight(model).detach().clone();

        using var gen27_1 = new Generator(42);
        model.ResizeTokenEmbeddings(49410, gen27_1);

        var after = TokenWeight(model);
        Assert.Equal(new long[] { 49410, 32 }, after.shape);
        Assert.Equal(49410, model.VocabSize);
        Assert.Equal(49410, model.Config.VocabSize);
        Assert.True(after[TensorIndex.Slice(0, 49408)].eq(before).all().item<bool>());
        var fresh = after[TensorIndex.Slice(49408, 49410)];
        Assert.False(fresh[0].eq(fresh[1]).all().item<bool>());
        double oldStd = before.std().item<float>(), newStd = fresh.std().item<float>();
        Assert.InRange(newStd, oldStd * 0.5, oldStd * 2.0);
    }

    [Fact]
    public void Resize_with_the_same_generator_seed_is_reproducible()
    {
        using var scope = torch.NewDisposeScope();
        using var a = LoadTiny();
        using var b = LoadTiny();
        using var gen46_1 = new Generator(7);
        a.ResizeTokenEmbeddings(49409, gen46_1);
        using var gen47_1 = new Generator(7);
        b.ResizeTokenEmbeddings(49409, gen47_1);
        Assert.True(a.GetTokenEmbedding(49408).eq(b.GetTokenEmbedding(49408)).all().item<bool>());
    }

    [Fact]
    public void Resized_model_encodes_the_new_token_and_keeps_old_outputs()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var gen56_1 = new Generator(1);
        model.ResizeTokenEmbeddings(49409, gen56_1);
        using var noGrad = torch.no_grad();
        using var output = model.Encode(Fixture.Ref("tokenizer.input_ids"));
        Fixture.AssertClose(output.LastHiddenState, Fixture.Ref("text_encoder.last_hidden_state"), what: "after resize");
        var withConcept = model.forward(PromptWith(49408));
        Assert.True(withConcept.isfinite().all().item<bool>());
    }

    [Fact]
    public void Shrinking_the_embedding_is_refused()
    {
        using var model = LoadTiny();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.ResizeTokenEmbeddings(49000));
    }

    [Fact]
    public void Set_then_get_token_embedding_round_trips_and_changes_only_that_row()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        model.ResizeTokenEmbeddings(49409);
        var before = TokenWeight(model).detach().clone();
        var row = torch.linspace(-1, 1, 32);

        model.SetTokenEmbedding(49408, row.unsqueeze(0));

        Assert.True(model.GetTokenEmbedding(49408).eq(row).all().item<bool>());
        Assert.True(TokenWeight(model)[TensorIndex.Slice(0, 49408)].eq(before[TensorIndex.Slice(0, 49408)]).all().item<bool>());
        // The copy returned by Get does not alias the matrix.
        var copy = model.GetTokenEmbedding(49408);
        copy.AddInPlace(1);
        Assert.True(model.GetTokenEmbedding(49408).eq(row).all().item<bool>());
    }

    [Fact]
    public void Token_row_accessors_validate_id_and_shape()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.GetTokenEmbedding(49408));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.SetTokenEmbedding(-1, torch.zeros(32)));
        Assert.Throws<ArgumentException>(() => model.SetTokenEmbedding(5, torch.zeros(31)));
    }

    [Fact]
    public void Override_row_gives_the_same_output_as_writing_the_row_into_the_matrix()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var gen105_1 = new Generator(3);
        model.ResizeTokenEmbeddings(49409, gen105_1);
        using var gen106_1 = new Generator(5);
        var row = torch.randn(32, generator: gen106_1);
        using var noGrad = torch.no_grad();

        var viaOverride = model.Encode(PromptWith(49408), new Dictionary<long, Tensor> { [49408] = row }).LastHiddenState;
        model.SetTokenEmbedding(49408, row);
        var viaMatrix = model.forward(PromptWith(49408));

        Fixture.AssertClose(viaOverride, viaMatrix, relTol: 1e-6, what: "override vs matrix row");
    }

    [Fact]
    public void Override_ids_may_lie_beyond_the_embedding_matrix()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var gen121_1 = new Generator(5);
        var row = torch.randn(1, 32, generator: gen121_1);
        using var noGrad = torch.no_grad();
        var output = model.Encode(PromptWith(49408), new Dictionary<long, Tensor> { [49408] = row }).LastHiddenState;
        Assert.Equal(new long[] { 1, 8, 32 }, output.shape);
        Assert.True(output.isfinite().all().item<bool>());
    }

    [Fact]
    public void Gradients_reach_the_override_tensor_and_not_the_frozen_model()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var gen133_1 = new Generator(3);
        model.ResizeTokenEmbeddings(49409, gen133_1);
        foreach (var p in model.parameters()) p.requires_grad = false;
        var trainable = model.GetTokenEmbedding(49408).unsqueeze(0).requires_grad_(true);

        var output = model.Encode(PromptWith(49408), new Dictionary<long, Tensor> { [49408] = trainable });
        output.LastHiddenState.Squared().mean().backward();

        Assert.NotNull(trainable.grad);
        Assert.True(trainable.grad!.abs().sum().item<float>() > 0);
        Assert.All(model.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void Overridden_row_of_a_trainable_matrix_gets_no_gradient()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        using var gen150_1 = new Generator(3);
        model.ResizeTokenEmbeddings(49409, gen150_1);
        using var gen151_1 = new Generator(9);
        var trainable = torch.randn(32, generator: gen151_1).requires_grad_(true);

        var output = model.Encode(PromptWith(49408), new Dictionary<long, Tensor> { [49408] = trainable });
        output.LastHiddenState.Squared().mean().backward();

        var grad = TokenWeight(model).grad;
        Assert.NotNull(grad);
        Assert.Equal(0f, grad![49408].abs().sum().item<float>());
        Assert.True(grad[320].abs().sum().item<float>() > 0); // "a" is looked up from the matrix
        Assert.True(trainable.grad!.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void Override_with_the_wrong_size_is_rejected()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LoadTiny();
        Assert.Throws<ArgumentException>(() => model.Encode(PromptWith(320), new Dictionary<long, Tensor> { [320] = torch.zeros(31) }));
    }
}
