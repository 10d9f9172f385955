using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop.Export;

/// Export → read back → the same summed delta per layer (1e-6 relative) and the same concept embeddings, for every
/// format, on a synthetic two-task run of ranks 2 and 3 (concatenated rank 5) on the sd-tiny fixture.
public class ExportRoundTripTests : IDisposable
{
    private const double RoundTripTol = 1e-6;
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-export-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RunDir => Path.Combine(_dir, "run");
    private string Out(string name) => Path.Combine(_dir, "out", name);

    private ExportResult Export(ExportFormat format, string outPath, string? tasks = null, int? rank = null, bool overwrite = false) =>
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = format, OutPath = outPath, Tasks = tasks, Rank = rank, Overwrite = overwrite });

    [Fact]
    public void The_layers_named_from_the_config_are_the_built_models_adapted_layers()
    {
        using var sd = StableDiffusion.Open(Fixture.SdTiny);
        var built = RunModel.BaseWeights(sd).ToDictionary(w => w.Key, w => (w.Value.shape[0], w.Value.shape[1]));
        var fromConfig = CrossAttentionLayers.KeyValue(sd.Unet.Config);
        Assert.Equal(sd.CrossAttentionKeyValueTargets().Select(t => t.Name), fromConfig.Select(l => l.Name));
        Assert.All(fromConfig, l => Assert.Equal(built[l.Name], (l.Shape.Out, l.Shape.In)));
    }

    [Fact]
    public void Kohya_file_holds_the_concatenated_factors_with_alpha_equal_to_rank_and_an_embedding_per_concept()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var path = Out("mine.safetensors");
        var result = Export(ExportFormat.Kohya, path);

        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal(22 * 3, file.Tensors.Count);
            const string module = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k";
            Assert.Equal([5L, 32L], file.Tensors[module + ".lora_down.weight"].Shape);
            Assert.Equal([64L, 5L], file.Tensors[module + ".lora_up.weight"].Shape);
            Assert.Empty(file.Tensors[module + ".alpha"].Shape);
            using var alpha = file.Read(module + ".alpha");
            Assert.Equal(5f, alpha.item<float>());
            Assert.Equal("5", file.Metadata["ss_network_dim"]);
            Assert.Equal("5.0", file.Metadata["ss_network_alpha"]);
            Assert.Equal("False", file.Metadata["ss_v2"]);
            Assert.Equal("sd_v1", file.Metadata["ss_base_model_version"]);
            Assert.Equal("stable-diffusion-v1/lora", file.Metadata["modelspec.architecture"]);
            Assert.Equal("mine", file.Metadata["modelspec.title"]);
        }
        SyntheticRun.AssertSameDeltas(SyntheticRun.ExpectedDeltas(run, 2), KohyaLoraFile.ReadDeltas(path, SyntheticRun.LayerNames), RoundTripTol, "kohya");

        foreach (var t in new[] { 1, 2 })
        {
            var embeddingPath = Out($"v{t}.safetensors");
            using (var file = SafeTensorsFile.Open(embeddingPath))
                Assert.Equal([1L, 32L], file.Tensors[EmbeddingFiles.A1111Key].Shape);
            Support.Fixture.AssertIdentical(EmbeddingFiles.Read(embeddingPath), SyntheticRun.TokenEmbedding(run, t), $"<v{t}> embedding");
            Assert.Contains(result.Messages, m => m.StartsWith($"<v{t}>: write \"v{t}\" in the prompt", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Tasks_one_to_t_export_only_those_tasks()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var path = Out("first.safetensors");
        Export(ExportFormat.Kohya, path, tasks: "1");
        SyntheticRun.AssertSameDeltas(SyntheticRun.ExpectedDeltas(run, 1), KohyaLoraFile.ReadDeltas(path, SyntheticRun.LayerNames), RoundTripTol, "kohya task 1");
        Assert.True(File.Exists(Out("v1.safetensors")));
        Assert.False(File.Exists(Out("v2.safetensors")));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("2", file.Metadata["ss_network_dim"]);
    }

    [Fact]
    public void Diffusers_folder_round_trips_the_deltas_and_holds_textual_inversion_files_keyed_by_token()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var dir = Out("diffusers");
        Export(ExportFormat.Diffusers, dir);
        var lora = Path.Combine(dir, DiffusersLoraFile.FileName);
        using (var file = SafeTensorsFile.Open(lora))
        {
            Assert.Equal([5L, 32L], file.Tensors["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora.down.weight"].Shape);
            Assert.Equal([32L, 5L], file.Tensors["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora.up.weight"].Shape);
            Assert.DoesNotContain(file.Tensors.Keys, k => k.Contains("alpha"));
        }
        SyntheticRun.AssertSameDeltas(SyntheticRun.ExpectedDeltas(run, 2), DiffusersLoraFile.ReadDeltas(lora), RoundTripTol, "diffusers");
        foreach (var t in new[] { 1, 2 })
        {
            var path = Path.Combine(dir, $"v{t}", EmbeddingFiles.DiffusersFileName);
            using (var file = SafeTensorsFile.Open(path))
                Assert.Equal([32L], file.Tensors[$"<v{t}>"].Shape);
            Support.Fixture.AssertIdentical(EmbeddingFiles.Read(path), SyntheticRun.TokenEmbedding(run, t));
        }
    }

    [Fact]
    public void Peft_folder_round_trips_the_deltas_with_lora_alpha_equal_to_r()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var dir = Out("peft");
        Export(ExportFormat.Peft, dir);
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, PeftAdapter.ConfigFileName))))
        {
            Assert.Equal(5, doc.RootElement.GetProperty("r").GetInt32());
            Assert.Equal(5, doc.RootElement.GetProperty("lora_alpha").GetInt32());
            Assert.Equal(22, doc.RootElement.GetProperty("target_modules").GetArrayLength());
        }
        using (var file = SafeTensorsFile.Open(Path.Combine(dir, PeftAdapter.WeightsFileName)))
        {
            Assert.Equal([5L, 32L], file.Tensors["base_model.model.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight"].Shape);
            Assert.Equal([64L, 5L], file.Tensors["base_model.model.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight"].Shape);
        }
        SyntheticRun.AssertSameDeltas(SyntheticRun.ExpectedDeltas(run, 2), PeftAdapter.ReadDeltas(dir), RoundTripTol, "peft");
        Assert.True(File.Exists(Path.Combine(dir, "v2", EmbeddingFiles.DiffusersFileName)));
    }

    [Fact]
    public void Svd_at_the_concatenated_rank_is_exact_and_a_lower_rank_reports_its_true_error()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var expected = SyntheticRun.ExpectedDeltas(run, 2);

        var full = Out("full.safetensors");
        var result = Export(ExportFormat.Kohya, full, rank: 5);
        Assert.Contains(result.Messages, m => m.Contains("relative reconstruction error"));
        SyntheticRun.AssertSameDeltas(expected, KohyaLoraFile.ReadDeltas(full, SyntheticRun.LayerNames), 1e-5, "rank 5 of 5");

        // Rank 1: the reported error is the one the written file really has.
        var layerNames = SyntheticRun.LayerNames;
        var adapters = Enumerable.Range(1, 2).Select(t => ContinualDiffusion.Lora.AdapterFile.Load(run.AdapterPath(t))).ToList();
        try
        {
            using var exact = StackedLora.Concatenate(adapters, layerNames);
            var (truncated, error) = exact.Truncate(1);
            using (truncated)
            {
                Assert.Equal(1, truncated.Rank);
                var approx = truncated.Deltas();
                double residual = 0, total = 0;
                foreach (var (name, e) in expected)
                {
                    var diff = approx[name].sub(e);
                    residual += diff.Squared().sum().item<double>();
                    total += e.Squared().sum().item<double>();
                }
                Assert.InRange(error.Relative, Math.Sqrt(residual / total) - 1e-6, Math.Sqrt(residual / total) + 1e-6);
                Assert.InRange(error.Relative, 0.05, 1.0); // random rank-5 deltas are far from rank 1
            }
        }
        finally
        {
            foreach (var a in adapters) a.Dispose();
        }
        // A fresh folder: in Out() the embeddings of the exports above already exist, which would be refused first.
        var big = Directory.CreateDirectory(Path.Combine(_dir, "big")).FullName;
        Assert.Contains("--rank 33", Assert.Throws<InputException>(() => Export(ExportFormat.Kohya, Path.Combine(big, "big.safetensors"), rank: 33)).Message);
    }

    [Fact]
    public void Truncated_svd_keeps_the_largest_singular_values()
    {
        // Δ = U diag(3, 2, 1, 0.5) Vᵀ with orthonormal U [6, 4], V [5, 4]: the rank-2 error is √(1 + 0.25) / √(9 + 4 + 1 + 0.25).
        var (u, _) = torch.linalg.qr(torch.randn(6, 4, ScalarType.Float64));
        var (v, _) = torch.linalg.qr(torch.randn(5, 4, ScalarType.Float64));
        var s = torch.tensor(new[] { 3.0, 2.0, 1.0, 0.5 });
        var delta = u.mul(s.unsqueeze(0)).matmul(v.t());

        var two = LowRank.Truncate(delta, 2);
        Assert.Equal([6L, 2L], two.Up.shape);
        Assert.Equal([2L, 5L], two.Down.shape);
        Assert.Equal(Math.Sqrt(1.25 / 14.25), two.RelativeError, 1e-9);
        var back = two.Up.to_type(ScalarType.Float64).matmul(two.Down.to_type(ScalarType.Float64));
        double actual = Math.Sqrt(back.sub(delta).Squared().sum().item<double>() / delta.Squared().sum().item<double>());
        Assert.Equal(two.RelativeError, actual, 1e-6); // float32 factors

        var four = LowRank.Truncate(delta, 4);
        Assert.True(four.RelativeError < 1e-12, $"rank 4 of a rank-4 matrix: {four.RelativeError}");
        Assert.Throws<ArgumentOutOfRangeException>(() => LowRank.Truncate(delta, 6));
    }

    [Fact]
    public void An_existing_out_is_refused_without_overwrite_and_replaced_with_it()
    {
        SyntheticRun.Create(RunDir, 2);
        var dir = Out("peft");
        Export(ExportFormat.Peft, dir);
        File.WriteAllText(Path.Combine(dir, "stale.txt"), "old");
        Assert.Contains("already exists", Assert.Throws<InputException>(() => Export(ExportFormat.Peft, dir)).Message);
        Export(ExportFormat.Peft, dir, overwrite: true);
        Assert.False(File.Exists(Path.Combine(dir, "stale.txt")), "the folder is replaced as a whole");
        Assert.Empty(Directory.GetDirectories(Out(""), ".*")); // no temp or set-aside folder left
    }

    [Fact]
    public void Merged_folder_is_the_model_sample_run_builds()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var dir = Out("merged");
        var result = Export(ExportFormat.Merged, dir);
        Assert.Contains(result.Messages, m => m.StartsWith("<v2>: write \"<v2>\" in the prompt (token id 49409)", StringComparison.Ordinal));

        using var viaRun = RunModel.LoadForSampling(run);
        using var merged = StableDiffusion.Open(dir);
        var mergedParameters = merged.Unet.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in viaRun.Unet.named_parameters())
            Support.Fixture.AssertIdentical(p, mergedParameters[name], $"unet {name}");
        const string prompt = "a photo of <v1> and <v2>";
        Assert.Equal(viaRun.Tokenizer.Encode(prompt).InputIds, merged.Tokenizer.Encode(prompt).InputIds);
        Assert.Equal(49410, merged.TextEncoder.VocabSize);
        using var ids = viaRun.Tokenize([prompt]);
        using var a = viaRun.TextEncoder.forward(ids);
        using var b = merged.TextEncoder.forward(ids);
        Support.Fixture.AssertIdentical(a, b, "text encoder states");

        var request = new SampleRequest { Prompt = prompt, Steps = 2, Seed = 3 };
        using var imageRun = new TextToImagePipeline(viaRun).Generate(request);
        using var imageMerged = new TextToImagePipeline(merged).Generate(request);
        Support.Fixture.AssertIdentical(imageRun, imageMerged, "the same image from the run and from the merged folder");

        // transformers reads the tokens from these files too.
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer", "tokenizer_config.json")));
        Assert.Equal("<v1>", config.RootElement.GetProperty("added_tokens_decoder").GetProperty("49408").GetProperty("content").GetString());
        using var added = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer", "added_tokens.json")));
        Assert.Equal(49409, added.RootElement.GetProperty("<v2>").GetInt32());
        using var textConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "text_encoder", "config.json")));
        Assert.Equal(49410, textConfig.RootElement.GetProperty("vocab_size").GetInt32());
    }
}
