using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Sampling;

/// End to end against diffusers' StableDiffusionPipeline on the sd-tiny fixture (reference.json "e2e").
public class PipelineParityTests
{
    private static SampleRequest E2eRequest(Tensor latents) => new()
    {
        Prompt = "a photograph of an astronaut riding a horse",
        NegativePrompt = "",
        Guidance = 7.5,
        Steps = 10,
        Height = 32,
        Width = 32,
        Latents = latents,
    };

    [Fact]
    public void Image_from_supplied_latents_matches_diffusers_within_2_of_255()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        var steps = new List<Tensor>();
        var image = new TextToImagePipeline(model).Generate(E2eRequest(Fixture.Ref("e2e.latents_init")),
            latentsAfterStep: l => steps.Add(l.clone().DetachFromDisposeScope()));

        var expectedSteps = Fixture.Ref("e2e.latents_steps");
        for (int k = 0; k < steps.Count; k++)
            Fixture.AssertClose(steps[k], expectedSteps[k], what: $"latents after step {k + 1}");
        var expected = Fixture.Ref("e2e.image");
        Fixture.AssertClose(image, expected, what: "decoded image");
        // As PNG bytes: within 2/255 of diffusers' image.
        var diff = (image.Times(255).round() - expected.Times(255).round()).abs().max().item<float>();
        Assert.True(diff <= 2f, $"max PNG difference {diff}/255");
    }

    [Fact]
    public void Prompt_embeddings_match_diffusers_encode_prompt()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        using var ids = model.Tokenize(["", "a photograph of an astronaut riding a horse"]);
        var states = model.TextEncoder.forward(ids);
        Fixture.AssertClose(states[0].unsqueeze(0), Fixture.Ref("e2e.negative_prompt_embeds"), what: "negative");
        Fixture.AssertClose(states[1].unsqueeze(0), Fixture.Ref("e2e.prompt_embeds"), what: "positive");
    }

    [Fact]
    public void Same_seed_gives_the_same_image_and_another_seed_a_different_one()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        var pipe = new TextToImagePipeline(model);
        var r = new SampleRequest { Prompt = "a cat", Steps = 3, Seed = 11 };
        var a = pipe.Generate(r);
        var b = pipe.Generate(r);
        var c = pipe.Generate(r with { Seed = 12 });
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.equal(c).all().item<bool>());
        Assert.Equal(new long[] { 1, 32, 32, 3 }, a.shape);
    }

    [Theory]
    [InlineData(30, 32, "multiples of 8")]
    [InlineData(32, 32, "unknown concept token")]
    public void Bad_requests_are_input_errors(int height, int width, string expected)
    {
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        var prompt = expected.Contains("concept") ? "<v3> portrait" : "a cat";
        var e = Assert.Throws<InputException>(() => new TextToImagePipeline(model).Generate(
            new SampleRequest { Prompt = prompt, Steps = 2, Height = height, Width = width }));
        Assert.Contains(expected, e.Message);
    }
}
