using System.Text.Json;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop;

/// End to end from the original-LDM single file against the diffusers pipeline it was converted from
/// (reference.json "e2e"), with the sd-tiny parity test's tolerances (Sampling/PipelineParityTests: every step's
/// latents and the image within Fixture.ParityRelTol relative error, the PNG within 2/255). reference.json's
/// tolerance_hints show float32-vs-float64 differences of about 3e-6 for the same computation, far inside both.
public class SingleFileParityTests
{
    private static JsonElement E2e => Sd1SingleFile.ReferenceJson.GetProperty("e2e");

    private static SampleRequest E2eRequest(Tensor latents) => new()
    {
        Prompt = E2e.GetProperty("prompt").GetString()!,
        NegativePrompt = E2e.GetProperty("negative_prompt").GetString()!,
        Guidance = E2e.GetProperty("guidance_scale").GetDouble(),
        Steps = E2e.GetProperty("num_inference_steps").GetInt32(),
        Height = E2e.GetProperty("height").GetInt32(),
        Width = E2e.GetProperty("width").GetInt32(),
        Latents = latents,
    };

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // everything the sampler reads is inferred from the weights alone
    public void Image_from_the_single_file_with_the_reference_latents_matches_diffusers_within_2_of_255(bool withYaml)
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Open(Sd1SingleFile.Model,
            withYaml ? new SingleFileOptions { OriginalConfigPath = Sd1SingleFile.OriginalConfig } : null);
        var steps = new List<Tensor>();
        try
        {
            var image = new TextToImagePipeline(model).Generate(E2eRequest(Sd1SingleFile.Ref("e2e.latents_init")),
                latentsAfterStep: l => steps.Add(l.clone().DetachFromDisposeScope()));

            var expectedSteps = Sd1SingleFile.Ref("e2e.latents_steps");
            Assert.Equal(expectedSteps.shape[0], steps.Count);
            for (int k = 0; k < steps.Count; k++)
                Fixture.AssertClose(steps[k], expectedSteps[k], what: $"latents after step {k + 1}");
            Fixture.AssertClose(steps[^1], Sd1SingleFile.Ref("e2e.latents_final"), what: "final latents");
            var expected = Sd1SingleFile.Ref("e2e.image");
            Fixture.AssertClose(image, expected, what: "decoded image");
            var diff = (image.Times(255).round() - expected.Times(255).round()).abs().max().item<float>();
            Assert.True(diff <= 2f, $"max PNG difference {diff}/255");
        }
        finally
        {
            foreach (var s in steps) s.Dispose(); // detached from the sampler's scope: owned by this list
        }
    }

    [Fact]
    public void Prompt_embeddings_match_diffusers_encode_prompt()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Open(Sd1SingleFile.Model);
        using var ids = model.Tokenize([E2e.GetProperty("negative_prompt").GetString()!, E2e.GetProperty("prompt").GetString()!]);
        var states = model.TextEncoder.forward(ids);
        Fixture.AssertClose(states[0].unsqueeze(0), Sd1SingleFile.Ref("e2e.negative_prompt_embeds"), what: "negative");
        Fixture.AssertClose(states[1].unsqueeze(0), Sd1SingleFile.Ref("e2e.prompt_embeds"), what: "positive");
    }

    [Fact]
    public void Unet_and_vae_outputs_match_the_reference_models()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Open(Sd1SingleFile.Model);
        using var noGrad = torch.no_grad();
        var unetOut = model.Unet.call(Sd1SingleFile.Ref("unet.sample"), Sd1SingleFile.Ref("unet.timesteps"), Sd1SingleFile.Ref("unet.encoder_hidden_states"));
        Fixture.AssertClose(unetOut, Sd1SingleFile.Ref("unet.out"), what: "unet.out");
        var (mean, _) = model.Vae.Encode(Sd1SingleFile.Ref("vae.image"));
        Fixture.AssertClose(mean, Sd1SingleFile.Ref("vae.posterior_mean"), what: "vae.posterior_mean");
        Fixture.AssertClose(model.Vae.Decode(Sd1SingleFile.Ref("vae.decode_latent")), Sd1SingleFile.Ref("vae.decoded"), what: "vae.decoded");
    }
}
