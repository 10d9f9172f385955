using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop;

/// Files that are not SD 1.x/2.x text-to-image LDM checkpoints are refused with one line that names the file and
/// what was found (an InputException: the CLI prints it and exits with code 2).
public class SingleFileRefusalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-single-file-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, params (string Key, long[] Shape)[] tensors)
    {
        var path = Path.Combine(_dir, name);
        using var scope = torch.NewDisposeScope();
        SafeTensorsFile.Save(path, tensors.ToDictionary(t => t.Key, t => torch.zeros(t.Shape)));
        return path;
    }

    private static InputException Refused(string path)
    {
        var e = Assert.ThrowsAny<InputException>(() => SingleFileCheckpoint.Open(path));
        Assert.DoesNotContain("\n", e.Message);
        Assert.Contains(Path.GetFileName(path), e.Message);
        return e;
    }

    private const string ConvIn = "model.diffusion_model.input_blocks.0.0.weight";

    [Fact]
    public void An_sdxl_checkpoint_is_named_as_such()
    {
        var e = Refused(Write("sdxl.safetensors",
            ("conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight", [77, 8]),
            ("conditioner.embedders.1.model.positional_embedding", [77, 8]),
            (ConvIn, [8, 4, 3, 3])));
        Assert.Contains("SDXL", e.Message);
        Assert.Contains("conditioner.embedders", e.Message);
    }

    [Fact]
    public void An_inpainting_checkpoint_is_named_by_its_nine_input_channels()
    {
        var e = Refused(Write("inpaint.safetensors", (ConvIn, [8, 9, 3, 3]), ("first_stage_model.encoder.conv_in.weight", [8, 3, 3, 3])));
        Assert.Contains("inpainting", e.Message);
        Assert.Contains("9 input channels", e.Message);
    }

    [Fact]
    public void An_image_conditioned_unet_is_refused_with_its_channel_count()
    {
        var e = Refused(Write("pix2pix.safetensors", (ConvIn, [8, 8, 3, 3])));
        Assert.Contains("8 input channels", e.Message);
    }

    [Fact]
    public void A_safetensors_without_ldm_keys_is_refused_naming_a_key_it_has()
    {
        var e = Refused(Write("other.safetensors", ("encoder.weight", [2, 2]), ("head.bias", [2])));
        Assert.Contains("not an original-LDM Stable Diffusion checkpoint", e.Message);
        Assert.Contains("model.diffusion_model.", e.Message);
        Assert.Contains("'encoder.weight'", e.Message);
    }

    [Fact]
    public void Diffusers_component_weights_point_to_the_folder_form()
    {
        var e = Refused(Write("diffusion_pytorch_model.safetensors", ("down_blocks.0.resnets.0.conv1.weight", [4, 4, 3, 3])));
        Assert.Contains("diffusers-format", e.Message);
    }

    [Fact]
    public void A_lora_file_is_not_taken_for_a_model()
    {
        var e = Refused(Write("lora.safetensors", ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", [4, 32])));
        Assert.Contains("a LoRA", e.Message);
    }

    [Fact]
    public void A_checkpoint_without_a_text_encoder_is_refused()
    {
        var e = Refused(Write("unet-vae.safetensors", (ConvIn, [8, 4, 3, 3]), ("first_stage_model.encoder.conv_in.weight", [8, 3, 3, 3])));
        Assert.Contains("no text encoder weights", e.Message);
    }

    [Theory]
    [InlineData("model.ckpt")]
    [InlineData("renamed-pickle.safetensors")]
    public void A_pickle_checkpoint_is_refused_without_being_read(string name)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, [(byte)'P', (byte)'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]); // torch.save's zip archive
        var e = Refused(path);
        Assert.Contains("pickle", e.Message);
        Assert.Contains("safetensors", e.Message);
    }

    [Fact]
    public void A_missing_file_is_an_input_error()
    {
        var e = Assert.ThrowsAny<InputException>(() => SingleFileCheckpoint.Open(Path.Combine(_dir, "nope.safetensors")));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Single_file_options_on_a_diffusers_folder_are_an_input_error()
    {
        var e = Assert.ThrowsAny<InputException>(() => StableDiffusion.Open(Fixture.SdTiny, new SingleFileOptions { PredictionType = "v_prediction" }));
        Assert.Contains("--prediction-type", e.Message);
    }

    [Fact]
    public void An_unknown_prediction_type_is_an_input_error()
    {
        var e = Assert.ThrowsAny<InputException>(() => SingleFileCheckpoint.Open(Sd1SingleFile.Model, new SingleFileOptions { PredictionType = "sample" }));
        Assert.Contains("--prediction-type", e.Message);
        Assert.Contains("'sample'", e.Message);
    }

    [Fact]
    public void A_header_whose_layer_indices_outgrow_its_tensors_is_refused_before_building_the_model()
    {
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var header = new Dictionary<string, SafeTensorInfo>(file.Tensors, StringComparer.Ordinal);
        for (int layer = 3; layer < 1000; layer++) // one bias each: the inferred encoder has 1000 full layers
        {
            var key = $"cond_stage_model.transformer.text_model.encoder.layers.{layer}.layer_norm1.bias";
            header[key] = new SafeTensorInfo(key, "F32", [32], 0, 128);
        }
        var arch = LdmArchitecture.Infer(header, "hostile.safetensors");
        Assert.Equal(1000, arch.TextEncoder.NumHiddenLayers);
        var e = Assert.Throws<CheckpointMismatchException>(() =>
            SingleFileCheckpoint.RequirePlausibleSize(arch, LdmKeyMap.Map(header, arch.Layout, "hostile.safetensors"), "hostile.safetensors"));
        Assert.Contains("text encoder", e.Message);
        Assert.Contains("inconsistent", e.Message);

        var fixtureArch = LdmArchitecture.Infer(file.Tensors, file.Path);
        SingleFileCheckpoint.RequirePlausibleSize(fixtureArch, LdmKeyMap.Map(file.Tensors, fixtureArch.Layout, file.Path), file.Path);
    }
}
