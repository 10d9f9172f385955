using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop.Export;

/// The single-file writer's SD 2.x text encoder: OpenCLIP keys under `cond_stage_model.model.`, q/k/v fused into
/// in_proj as diffusers' conversion script does, and the unused last block SD 2 files carry. There is no SD 2.x
/// fixture from a real conversion (see Sd2SingleFileTests), so the files are the SD-1 fixture's UNet and VAE with a
/// small OpenCLIP tower of distinct values (4 blocks of width 32), and sd-tiny's folder with its text encoder
/// declared GELU (SD 2's activation, which is what makes a diffusers text encoder OpenCLIP's to the writer).
public class MergedSingleFileSd2Tests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-export-sd2-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string P = LdmKeyMap.OpenClipPrefix;

    /// SD 2 files need their heads (the 64-channel convention does not divide these widths) and prediction type named.
    private SingleFileOptions Options()
    {
        var yaml = Path.Combine(_dir, "sd2.yaml");
        File.WriteAllText(yaml, "model:\n  params:\n    unet_config:\n      params:\n        num_heads: 8\n");
        return new SingleFileOptions { OriginalConfigPath = yaml, PredictionType = "epsilon" };
    }

    private string Sd2SingleFile()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = SafeTensorsFile.Load(Sd1SingleFile.Model)
            .Where(kv => !kv.Key.StartsWith(LdmKeyMap.ClipPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        foreach (var (key, tensor) in Sd2SingleFileTests.OpenClipTensors(width: 32, blocks: 4, vocab: 49408, positions: 77, mlp: 128)) tensors[key] = tensor;
        var path = Path.Combine(_dir, "sd2.safetensors");
        SafeTensorsFile.Save(path, tensors);
        return path;
    }

    [Fact]
    public void An_sd2_single_file_written_back_keeps_every_key_bit_for_bit_with_q_k_v_fused_again_and_its_unused_block()
    {
        var source = Sd2SingleFile();
        var written = Path.Combine(_dir, "out", "written.safetensors");
        using (var model = BaseModelSource.Open(source, Options()))
        {
            Assert.Equal(3, model.SingleFile!.Architecture.TextEncoder.NumHiddenLayers);
            MergedSingleFileExport.Write(written, model, adapters: [], SyntheticRun.LayerNames, metadata: null);
        }
        // resblocks.3, text_projection and logit_scale are read by no module, and carried over as they are.
        MergedSingleFileTests.AssertSameFile(source, written);
    }

    [Fact]
    public void An_sd2_diffusers_folder_gets_openclip_keys_and_a_copy_of_its_last_layer_as_the_unused_block()
    {
        var folder = Path.Combine(_dir, "sd2-folder");
        CopyTree(Fixture.SdTiny, folder);
        var configPath = Path.Combine(folder, "text_encoder", "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["hidden_act"] = "gelu";
        File.WriteAllText(configPath, config.ToJsonString());

        var written = Path.Combine(_dir, "out", "sd2.safetensors");
        using (var model = BaseModelSource.Open(folder))
            MergedSingleFileExport.Write(written, model, adapters: [], SyntheticRun.LayerNames, metadata: null);

        using (var scope = torch.NewDisposeScope())
        using (var file = SafeTensorsFile.Open(written))
        using (var text = SafeTensorsFile.Open(Path.Combine(folder, "text_encoder", "model.safetensors")))
        {
            Assert.DoesNotContain(file.Tensors.Keys, k => k.StartsWith(LdmKeyMap.ClipPrefix, StringComparison.Ordinal));
            Assert.Equal([96L, 32L], file.Tensors[P + "transformer.resblocks.0.attn.in_proj_weight"].Shape);
            const string layer = "text_model.encoder.layers.1.self_attn.";
            var qkv = torch.cat([text.Read(layer + "q_proj.weight"), text.Read(layer + "k_proj.weight"), text.Read(layer + "v_proj.weight")], 0);
            Fixture.AssertIdentical(file.Read(P + "transformer.resblocks.1.attn.in_proj_weight"), qkv, "in_proj_weight = [q; k; v]");
            var qkvBias = torch.cat([text.Read(layer + "q_proj.bias"), text.Read(layer + "k_proj.bias"), text.Read(layer + "v_proj.bias")], 0);
            Fixture.AssertIdentical(file.Read(P + "transformer.resblocks.1.attn.in_proj_bias"), qkvBias, "in_proj_bias = [q; k; v]");
            Fixture.AssertIdentical(file.Read(P + "ln_final.weight"), text.Read("text_model.final_layer_norm.weight"), "ln_final");
            Fixture.AssertIdentical(file.Read(P + "positional_embedding"), text.Read("text_model.embeddings.position_embedding.weight"), "positional_embedding");

            // sd-tiny's text encoder has 3 layers: block 3 is block 2 again, as SD 2 files carry a 24th block nobody reads.
            var lastBlock = file.Tensors.Keys.Where(k => k.StartsWith(P + "transformer.resblocks.2.", StringComparison.Ordinal)).ToList();
            Assert.Equal(12, lastBlock.Count);
            foreach (var key in lastBlock)
                Fixture.AssertIdentical(file.Read(key.Replace(".resblocks.2.", ".resblocks.3.", StringComparison.Ordinal)), file.Read(key), key);
            Assert.DoesNotContain(file.Tensors.Keys, k => k.StartsWith(P + "transformer.resblocks.4.", StringComparison.Ordinal));
        }

        // Read as an SD 2 single file: the penultimate layer of 4 blocks is the folder's 3 layers, every tensor the folder's.
        using var folderSource = BaseModelSource.Open(folder);
        using var singleSource = BaseModelSource.Open(written, Options());
        Assert.Equal(SdVersion.Sd2, singleSource.SingleFile!.Architecture.Version);
        Assert.Equal(3, singleSource.SingleFile.Architecture.TextEncoder.NumHiddenLayers);
        Assert.Equal(4, singleSource.SingleFile.Architecture.TextEncoderLayersInFile);
        using var expected = ModelTensors.Open(folderSource);
        using var actual = ModelTensors.Open(singleSource);
        MergedSingleFileTests.AssertSameTensors(expected, actual);
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.EnumerateFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.EnumerateDirectories(from)) CopyTree(d, Path.Combine(to, Path.GetFileName(d)));
    }
}
