using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop;

/// SD 2.x single files. There is no SD 2.x fixture from a real conversion, so these are built from the documented
/// mapping (diffusers' convert_open_clip_checkpoint, kohya's convert_ldm_clip_checkpoint_v2): real SD 2 files carry
/// 24 OpenCLIP resblocks of which SD reads 23 (the penultimate layer), a fused in_proj per block, a text_projection
/// and a logit_scale that SD never uses. The small files here have 4 blocks with the same structure.
public class Sd2SingleFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-sd2-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string P = LdmKeyMap.OpenClipPrefix;
    private const int Width = 16, Mlp = 32, Vocab = 10, Positions = 5, Blocks = 4;

    /// An OpenCLIP text tower with distinct values in every tensor (each tensor i holds i·1000 + arange).
    internal static Dictionary<string, Tensor> OpenClipTensors(int width = Width, int blocks = Blocks, int vocab = Vocab, int positions = Positions, int mlp = Mlp)
    {
        var shapes = new Dictionary<string, long[]>
        {
            [P + "token_embedding.weight"] = [vocab, width],
            [P + "positional_embedding"] = [positions, width],
            [P + "ln_final.weight"] = [width],
            [P + "ln_final.bias"] = [width],
            [P + "text_projection"] = [width, width],
            [P + "logit_scale"] = [],
        };
        for (int b = 0; b < blocks; b++)
        {
            string r = $"{P}transformer.resblocks.{b}.";
            shapes[r + "attn.in_proj_weight"] = [3 * width, width];
            shapes[r + "attn.in_proj_bias"] = [3 * width];
            shapes[r + "attn.out_proj.weight"] = [width, width];
            shapes[r + "attn.out_proj.bias"] = [width];
            shapes[r + "ln_1.weight"] = [width];
            shapes[r + "ln_1.bias"] = [width];
            shapes[r + "ln_2.weight"] = [width];
            shapes[r + "ln_2.bias"] = [width];
            shapes[r + "mlp.c_fc.weight"] = [mlp, width];
            shapes[r + "mlp.c_fc.bias"] = [mlp];
            shapes[r + "mlp.c_proj.weight"] = [width, mlp];
            shapes[r + "mlp.c_proj.bias"] = [width];
        }
        int i = 0;
        return shapes.ToDictionary(kv => kv.Key, kv =>
            OwnedScalars.Arange(0, kv.Value.Aggregate(1L, (a, b) => a * b), ScalarType.Float32).Plus(1000f * i++).reshape(kv.Value));
    }

    private string Write(Dictionary<string, Tensor> tensors)
    {
        var path = Path.Combine(_dir, $"sd2-{Guid.NewGuid():N}.safetensors");
        SafeTensorsFile.Save(path, tensors);
        return path;
    }

    [Fact]
    public void OpenClip_blocks_map_to_clip_layers_with_in_proj_rows_split_into_q_k_v_and_the_last_block_unused()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = OpenClipTensors();
        using var file = SafeTensorsFile.Open(Write(tensors));

        var (config, inFile) = LdmArchitecture.InferTextEncoder(file.Tensors, file.Path, SdVersion.Sd2, original: null);
        Assert.Equal(Blocks, inFile);
        Assert.Equal(Blocks - 1, config.NumHiddenLayers); // the penultimate layer
        Assert.Equal("gelu", config.HiddenAct);
        Assert.Equal(Width, config.HiddenSize);
        Assert.Equal(Mlp, config.IntermediateSize);
        Assert.Equal(Vocab, config.VocabSize);
        Assert.Equal(Positions, config.MaxPositionEmbeddings);
        Assert.Equal(2, config.NumAttentionHeads); // a 16-wide test tower: 8-wide heads

        var mapping = LdmKeyMap.Map(file.Tensors, new LdmLayout(UnetLayersPerBlock: 2, VaeBlocks: 4, TextEncoderLayers: config.NumHiddenLayers), file.Path);
        Assert.Empty(mapping.Unknown);
        Assert.Empty(mapping.Unet);
        Assert.Empty(mapping.Vae);
        var lastBlock = tensors.Keys.Where(k => k.StartsWith($"{P}transformer.resblocks.{Blocks - 1}.", StringComparison.Ordinal));
        Assert.Equal(lastBlock.Append(P + "text_projection").Append(P + "logit_scale").Order(StringComparer.Ordinal), mapping.Ignored.Order(StringComparer.Ordinal));

        using var model = new ClipTextModel(config);
        LdmKeyMapTests.AssertSameKeysAndShapes(model, mapping.TextEncoder, "text encoder");
        StateDictLoader.LoadStrict(model, new LdmStateDict(file, mapping.TextEncoder, SdComponent.TextEncoder));

        var loaded = StateDictLoader.Targets(model);
        for (int b = 0; b < Blocks - 1; b++)
        {
            string r = $"{P}transformer.resblocks.{b}.", l = $"text_model.encoder.layers.{b}.";
            var w = tensors[r + "attn.in_proj_weight"];
            var bias = tensors[r + "attn.in_proj_bias"];
            AssertEqual(w.narrow(0, 0, Width), loaded[l + "self_attn.q_proj.weight"], $"layer {b} q weight = rows [0, D)");
            AssertEqual(w.narrow(0, Width, Width), loaded[l + "self_attn.k_proj.weight"], $"layer {b} k weight = rows [D, 2D)");
            AssertEqual(w.narrow(0, 2 * Width, Width), loaded[l + "self_attn.v_proj.weight"], $"layer {b} v weight = rows [2D, 3D)");
            AssertEqual(bias.narrow(0, 0, Width), loaded[l + "self_attn.q_proj.bias"], $"layer {b} q bias");
            AssertEqual(bias.narrow(0, Width, Width), loaded[l + "self_attn.k_proj.bias"], $"layer {b} k bias");
            AssertEqual(bias.narrow(0, 2 * Width, Width), loaded[l + "self_attn.v_proj.bias"], $"layer {b} v bias");
            AssertEqual(tensors[r + "attn.out_proj.weight"], loaded[l + "self_attn.out_proj.weight"], $"layer {b} out_proj");
            AssertEqual(tensors[r + "ln_2.bias"], loaded[l + "layer_norm2.bias"], $"layer {b} ln_2");
            AssertEqual(tensors[r + "mlp.c_fc.weight"], loaded[l + "mlp.fc1.weight"], $"layer {b} c_fc");
            AssertEqual(tensors[r + "mlp.c_proj.bias"], loaded[l + "mlp.fc2.bias"], $"layer {b} c_proj");
        }
        AssertEqual(tensors[P + "ln_final.weight"], loaded["text_model.final_layer_norm.weight"], "ln_final");
        AssertEqual(tensors[P + "positional_embedding"], loaded["text_model.embeddings.position_embedding.weight"], "positional_embedding");
        AssertEqual(tensors[P + "token_embedding.weight"], loaded["text_model.embeddings.token_embedding.weight"], "token_embedding");
    }

    [Fact]
    public void A_yaml_that_reads_the_last_layer_keeps_every_block()
    {
        var tensors = OpenClipTensors();
        using var file = SafeTensorsFile.Open(Write(tensors));
        var yaml = new LdmOriginalConfig { Source = "test.yaml", OpenClipLayer = "last" };
        var (config, inFile) = LdmArchitecture.InferTextEncoder(file.Tensors, file.Path, SdVersion.Sd2, yaml);
        Assert.Equal(Blocks, config.NumHiddenLayers);
        var mapping = LdmKeyMap.Map(file.Tensors, new LdmLayout(2, 4, config.NumHiddenLayers), file.Path);
        Assert.Equal(new[] { P + "logit_scale", P + "text_projection" }, mapping.Ignored.Order(StringComparer.Ordinal));
        Assert.Contains($"text_model.encoder.layers.{Blocks - 1}.self_attn.v_proj.weight", mapping.TextEncoder.Keys);
    }

    [Fact]
    public void A_fused_projection_that_is_not_three_blocks_of_rows_is_refused_naming_the_key()
    {
        var tensors = OpenClipTensors();
        tensors[P + "transformer.resblocks.1.attn.in_proj_bias"] = torch.zeros(3 * Width + 1);
        using var file = SafeTensorsFile.Open(Write(tensors));
        var e = Assert.Throws<CheckpointMismatchException>(() => LdmKeyMap.Map(file.Tensors, new LdmLayout(2, 4, Blocks - 1), file.Path));
        Assert.Contains("transformer.resblocks.1.attn.in_proj_bias", e.Message);
    }

    /// The SD 1.x fixture's header turned into an SD 2.x one: OpenCLIP text keys (its width, one block more than the
    /// CLIP layers kept) and Linear proj_in/proj_out. Shapes only: nothing is read.
    private static Dictionary<string, SafeTensorInfo> Sd2LikeHeader()
    {
        using var fixture = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var header = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        void Add(string key, long[] shape) => header[key] = new SafeTensorInfo(key, "F32", shape, 0, 4 * shape.Aggregate(1L, (a, b) => a * b));
        foreach (var (key, info) in fixture.Tensors)
        {
            if (key.StartsWith(LdmKeyMap.ClipPrefix, StringComparison.Ordinal)) continue;
            bool projection = key.StartsWith(LdmKeyMap.UnetPrefix, StringComparison.Ordinal)
                && (key.EndsWith(".proj_in.weight", StringComparison.Ordinal) || key.EndsWith(".proj_out.weight", StringComparison.Ordinal));
            Add(key, projection ? info.Shape[..2] : info.Shape);
        }
        foreach (var (key, tensor) in OpenClipTensors(width: 32, blocks: 4, vocab: 49408, positions: 77, mlp: 128))
        {
            Add(key, tensor.shape);
            tensor.Dispose();
        }
        return header;
    }

    [Fact]
    public void An_sd2_header_needs_its_prediction_type_named()
    {
        var e = Assert.Throws<InputException>(() => LdmArchitecture.Infer(Sd2LikeHeader(), "sd2.safetensors"));
        Assert.Contains("SD 2.x", e.Message);
        Assert.Contains("--prediction-type", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Sd2_heads_follow_64_channel_heads_so_a_narrower_unet_needs_the_yaml()
    {
        var e = Assert.Throws<CheckpointMismatchException>(() => LdmArchitecture.Infer(Sd2LikeHeader(), "sd2.safetensors", predictionType: "epsilon"));
        Assert.Contains("64-channel heads", e.Message);
        Assert.Contains("--original-config", e.Message);
    }

    [Fact]
    public void An_sd2_header_infers_linear_projection_head_channels_gelu_and_the_penultimate_layer()
    {
        var header = Sd2LikeHeader();
        var yaml = new LdmOriginalConfig { Source = "v2-inference-v.yaml", NumHeadChannels = 8, PredictionType = "v_prediction", ImageSize = 12 };
        var arch = LdmArchitecture.Infer(header, "sd2.safetensors", yaml);

        Assert.Equal(SdVersion.Sd2, arch.Version);
        Assert.True(arch.Unet.UseLinearProjection);
        Assert.True(arch.Unet.UpcastAttention);
        Assert.Equal([4, 8, 8], arch.Unet.AttentionHeads()); // block widths 32, 64, 64 in 8-channel heads
        Assert.Equal(12, arch.Unet.SampleSize);
        Assert.Equal("gelu", arch.TextEncoder.HiddenAct);
        Assert.Equal(3, arch.TextEncoder.NumHiddenLayers);
        Assert.Equal(4, arch.TextEncoderLayersInFile);
        Assert.Equal("v_prediction", arch.Scheduler.PredictionType);
        Assert.Equal("!", arch.PadToken);

        // The option overrides the yaml; without a yaml an SD 2 v model samples at 768 px (96 latents).
        Assert.Equal("epsilon", LdmArchitecture.Infer(header, "sd2.safetensors", yaml, "epsilon").Scheduler.PredictionType);

        var mapping = LdmKeyMap.Map(header, arch.Layout, "sd2.safetensors");
        Assert.Empty(mapping.Unknown);
        using (var unet = new UNet2DConditionModel(arch.Unet)) LdmKeyMapTests.AssertSameKeysAndShapes(unet, mapping.Unet, "UNet");
        using (var vae = new AutoencoderKL(arch.Vae)) LdmKeyMapTests.AssertSameKeysAndShapes(vae, mapping.Vae, "VAE");
        using (var text = new ClipTextModel(arch.TextEncoder)) LdmKeyMapTests.AssertSameKeysAndShapes(text, mapping.TextEncoder, "text encoder");
    }

    [Fact]
    public void The_sd2_tokenizer_pads_with_the_exclamation_mark()
    {
        var yaml = new LdmOriginalConfig { Source = "v2.yaml", NumHeadChannels = 8 };
        var arch = LdmArchitecture.Infer(Sd2LikeHeader(), "sd2.safetensors", yaml, "v_prediction");
        Assert.Equal(96, arch.Unet.SampleSize);
        var files = ContinualDiffusion.Text.ClipTokenizerFiles.Read(ContinualDiffusion.Text.ClipTokenizerFiles.BundledFolder);
        var tokenizer = ContinualDiffusion.Text.ClipTokenizer.FromFiles(files with { PadToken = arch.PadToken });
        Assert.Equal(0L, tokenizer.PadId);
        var ids = tokenizer.Encode("a cat").InputIds;
        Assert.Equal(0L, ids[^1]);
    }

    private static void AssertEqual(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        Assert.True(expected.equal(actual).all().item<bool>(), what);
    }
}
