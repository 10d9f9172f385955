using ContinualDiffusion.Configuration;
using ContinualDiffusion.Interop.SingleFile;

namespace ContinualDiffusion.Tests.Interop;

/// `--original-config`: the LDM yaml subset the CompVis / Stability configs are written in.
public class LdmOriginalConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-ldm-yaml-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string text)
    {
        var path = Path.Combine(_dir, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void The_fixture_yaml_reads_with_block_lists()
    {
        var c = LdmOriginalConfig.Load(Sd1SingleFile.OriginalConfig);
        Assert.Equal(0.00085, c.LinearStart);
        Assert.Equal(0.012, c.LinearEnd);
        Assert.Equal(1000, c.Timesteps);
        Assert.Null(c.PredictionType);
        Assert.Equal(0.18215, c.ScaleFactor);
        Assert.Equal(16, c.ImageSize);
        Assert.Equal(32, c.ModelChannels);
        Assert.Equal([1, 2, 2], c.ChannelMult!);
        Assert.Equal(2, c.NumResBlocks);
        Assert.Equal(8, c.NumHeads);
        Assert.Null(c.NumHeadChannels);
        Assert.Equal([1], c.TransformerDepth!);
        Assert.Equal(32, c.ContextDim);
        Assert.Null(c.UseLinearInTransformer);
        Assert.Equal([1, 2, 2, 2], c.VaeChMult!);
        Assert.Equal(4, c.VaeZChannels);
        Assert.Equal(4, c.VaeEmbedDim);
        Assert.Equal("ldm.modules.encoders.modules.FrozenCLIPEmbedder", c.CondStageTarget);
        Assert.Null(c.OpenClipLayer);
    }

    /// The shape of stable-diffusion-2's v2-inference-v.yaml: flow lists, quoted strings, trailing comments,
    /// `1.e-6`-style numbers, num_heads left at -1.
    private const string Sd2Yaml = """
        model:
          base_learning_rate: 1.0e-4
          target: ldm.models.diffusion.ddpm.LatentDiffusion
          params:
            parameterization: "v"
            linear_start: 0.00085
            linear_end: 0.0120
            timesteps: 1000
            image_size: 96
            scale_factor: 0.18215
            scheduler_config: # 10000 warmup steps
              params:
                warm_up_steps: [ 10000 ]
                f_start: [ 1.e-6 ]
            unet_config:
              target: ldm.modules.diffusionmodules.openaimodel.UNetModel
              params:
                use_checkpoint: True
                image_size: 32 # unused
                in_channels: 4
                out_channels: 4
                model_channels: 320
                attention_resolutions: [ 4, 2, 1 ]
                num_res_blocks: 2
                channel_mult: [ 1, 2, 4, 4 ]
                num_heads: -1
                num_head_channels: 64 # need to fix for flash-attn
                use_linear_in_transformer: True
                transformer_depth: 1
                context_dim: 1024
                legacy: False
            first_stage_config:
              params:
                embed_dim: 4
                ddconfig:
                  z_channels: 4
                  ch: 128
                  ch_mult:
                  - 1
                  - 2
                  - 4
                  - 4
                  attn_resolutions: []
                lossconfig:
                  target: torch.nn.Identity
            cond_stage_config:
              target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
              params:
                freeze: True
                layer: "penultimate"
        """;

    [Fact]
    public void An_sd2_yaml_gives_v_prediction_head_channels_and_the_penultimate_layer()
    {
        var c = LdmOriginalConfig.Load(Write(Sd2Yaml));
        Assert.Equal("v_prediction", c.PredictionType);
        Assert.Equal(96, c.ImageSize);
        Assert.Null(c.NumHeads);
        Assert.Equal(64, c.NumHeadChannels);
        Assert.True(c.UseLinearInTransformer);
        Assert.Equal([1, 2, 4, 4], c.ChannelMult!);
        Assert.Equal([1, 2, 4, 4], c.VaeChMult!);
        Assert.Equal("penultimate", c.OpenClipLayer);
        Assert.Equal(0.012, c.LinearEnd);
    }

    [Theory]
    [InlineData("model:\n\tparams: {}\n", "tabs")]
    [InlineData("model:\n  params:\n    x:\n    - a: 1\n", "lists of mappings")]
    [InlineData("model:\n  params:\n    image_size: &size 64\n", "anchors")]
    [InlineData("model:\n  params:\n    image_size: 64\n    image_size: 96\n", "appears twice")]
    [InlineData("model:\n  params:\n    image_size: sixty-four\n", "key 'model.params.image_size': expected an integer")]
    [InlineData("model:\n  params:\n    parameterization: x0\n", "'x0' is not supported")]
    [InlineData("foo: 1\n", "no 'model.params'")]
    public void Unsupported_yaml_is_refused_naming_the_line_or_key(string text, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => LdmOriginalConfig.Load(Write(text)));
        Assert.Contains(expected, e.Message);
    }
}
