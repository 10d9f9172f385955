using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Interop.Import;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Interop.Export;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop.Import;

/// Other tools' LoRAs and embeddings merged into the sd-tiny model (torch): cdiff's own exports read back as foreign
/// files draw what `sample --run` draws, SCALE multiplies the delta, text-encoder and conv LoRAs change exactly
/// up·down·alpha/r·scale, multi-vector embeddings expand.
public class ForeignLoraTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-import-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RunDir => Path.Combine(_dir, "run");
    private string Out(string name) => Path.Combine(_dir, "out", name);

    private const string ToK = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k";
    private const string QProj = "text_model.encoder.layers.0.self_attn.q_proj";

    private static StableDiffusion Base() => StableDiffusion.Open(Fixture.SdTiny);

    private static Dictionary<string, Tensor> UnetParameters(StableDiffusion sd) =>
        sd.Unet.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    private static Dictionary<string, Tensor> TextEncoderParameters(StableDiffusion sd) =>
        sd.TextEncoder.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    /// `sample --run` and `sample --model BASE --lora … --embedding …` built in process, then compared weight by weight,
    /// text-encoder states and image.
    private static void AssertSameModelAndImage(StableDiffusion viaRun, StableDiffusion viaFiles, string runPrompt, string filePrompt)
    {
        var files = UnetParameters(viaFiles);
        foreach (var (name, p) in UnetParameters(viaRun)) Fixture.AssertIdentical(files[name], p, $"unet {name}");
        Assert.Equal(viaRun.Tokenizer.Encode(runPrompt).InputIds, viaFiles.Tokenizer.Encode(filePrompt).InputIds);
        using var runIds = viaRun.Tokenize([runPrompt]);
        using var fileIds = viaFiles.Tokenize([filePrompt]);
        using var a = viaRun.TextEncoder.forward(runIds);
        using var b = viaFiles.TextEncoder.forward(fileIds);
        Fixture.AssertIdentical(b, a, "text encoder states");
        using var imageRun = new TextToImagePipeline(viaRun).Generate(new SampleRequest { Prompt = runPrompt, Steps = 2, Seed = 3 });
        using var imageFiles = new TextToImagePipeline(viaFiles).Generate(new SampleRequest { Prompt = filePrompt, Steps = 2, Seed = 3 });
        Fixture.AssertIdentical(imageFiles, imageRun, "the same image from the run and from its exported files");
    }

    [Fact]
    public void A_kohya_export_and_its_embedding_on_the_base_model_draw_what_the_run_draws_bit_for_bit()
    {
        // One task: the kohya file holds the task's own factors with alpha = rank (scale exactly 1), and the import
        // forms zeros.addmm_(up, down) as DeltaMerger forms zeros.addmm_(A, B), so every weight is bit-identical.
        var run = SyntheticRun.Create(RunDir, 3);
        var lora = Out("concepts.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Kohya, OutPath = lora });

        using var viaRun = RunModel.LoadForSampling(run);
        using var viaFiles = Base();
        var lines = ForeignAdditions.Apply(viaFiles, [LoraSpec.Parse(lora)], [EmbeddingSpec.Parse(Out("v1.safetensors") + ":v1")], ignoreUnknownKeys: false);
        Assert.Contains(lines, l => l.Contains("merged 22 UNet and 0 text-encoder module(s) at scale 1"));
        Assert.Contains(lines, l => l.Contains("write \"v1\" in the prompt (1 vector(s), token id(s) 49408)"));
        AssertSameModelAndImage(viaRun, viaFiles, "a photo of <v1>", "a photo of v1");
    }

    [Fact]
    public void The_same_through_the_cli_gives_the_same_png()
    {
        SyntheticRun.Create(RunDir, 2);
        var lora = Out("concepts.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Kohya, OutPath = lora });
        var viaRun = CliRunner.Run("sample", "--run", RunDir, "--prompt", "a photo of <v1>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "s-run"));
        Assert.True(viaRun.ExitCode == 0, viaRun.Stderr);
        var viaFiles = CliRunner.Run("sample", "--model", Fixture.SdTiny, "--lora", lora, "--embedding", Out("v1.safetensors") + ":v1",
            "--prompt", "a photo of v1", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "s-files"));
        Assert.True(viaFiles.ExitCode == 0, viaFiles.Stderr);
        var (a, _) = ContinualDiffusion.Imaging.PngFile.Load(viaRun.Stdout.Trim());
        var (b, text) = ContinualDiffusion.Imaging.PngFile.Load(viaFiles.Stdout.Trim());
        Fixture.AssertIdentical(b, a, "sample --model BASE --lora --embedding draws what sample --run draws");
        Assert.Equal(lora, text["lora"]);
    }

    [Fact]
    public void Two_tasks_concatenated_in_one_lora_match_the_run_within_float_summation()
    {
        // Σ_t A_t·B_t as one product over the concatenated rank sums in another order than the run's task-by-task
        // addmm_: equal within float32 rounding (relative 1e-6 per weight), not bit for bit.
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var lora = Out("concepts.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Kohya, OutPath = lora });
        using var viaRun = RunModel.LoadForSampling(run);
        using var viaFiles = Base();
        ForeignAdditions.Apply(viaFiles, [LoraSpec.Parse(lora)], [], ignoreUnknownKeys: false);
        var files = UnetParameters(viaFiles);
        foreach (var (name, p) in UnetParameters(viaRun)) Fixture.AssertClose(files[name], p, 1e-6, $"unet {name}");
    }

    [Fact]
    public void A_diffusers_export_folder_and_its_learned_embeds_draw_what_the_run_draws()
    {
        var run = SyntheticRun.Create(RunDir, 2);
        var dir = Out("diffusers");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Diffusers, OutPath = dir });
        using var viaRun = RunModel.LoadForSampling(run);
        using var viaFiles = Base();
        // Folders as diffusers' load_lora_weights(DIR) / load_textual_inversion(DIR) take them; the word is the file's
        // token key, <v1>.
        var lines = ForeignAdditions.Apply(viaFiles, [LoraSpec.Parse(dir)], [EmbeddingSpec.Parse(Path.Combine(dir, "v1"))], ignoreUnknownKeys: false);
        Assert.Contains(lines, l => l.Contains("(diffusers): merged 22 UNet"));
        Assert.Contains(lines, l => l.Contains("write \"<v1>\" in the prompt"));
        AssertSameModelAndImage(viaRun, viaFiles, "a photo of <v1>", "a photo of <v1>");
    }

    [Fact]
    public void Scale_one_half_merges_half_the_delta()
    {
        SyntheticRun.Create(RunDir, 2);
        var lora = Out("concepts.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Kohya, OutPath = lora });
        using var plain = Base();
        using var full = Base();
        using var half = Base();
        ForeignAdditions.Apply(full, [LoraSpec.Parse(lora)], [], false);
        ForeignAdditions.Apply(half, [LoraSpec.Parse(lora + ":0.5")], [], false);
        var w0 = UnetParameters(plain)[ToK + ".weight"];
        using var fullDelta = UnetParameters(full)[ToK + ".weight"].to_type(ScalarType.Float64).sub(w0.to_type(ScalarType.Float64));
        using var halfDelta = UnetParameters(half)[ToK + ".weight"].to_type(ScalarType.Float64).sub(w0.to_type(ScalarType.Float64));
        Assert.True(fullDelta.abs().max().item<double>() > 1e-3, "the LoRA changes the weight");
        using var expected = fullDelta.Times(0.5);
        Fixture.AssertClose(halfDelta, expected, 1e-5, "SCALE 0.5");
        // Layers the LoRA does not name are untouched.
        Fixture.AssertIdentical(UnetParameters(half)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight"],
            UnetParameters(plain)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight"], "to_q");
    }

    [Fact]
    public void A_lora_te_module_changes_q_proj_by_up_down_alpha_over_rank_times_scale()
    {
        const string name = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
        var path = Out("te.safetensors");
        Directory.CreateDirectory(Out(""));
        var down = torch.randn(2, 32).Times(0.1);
        var up = torch.randn(32, 2).Times(0.1);
        var alpha = OwnedScalars.Full([], 1, ScalarType.Float32); // rank 2 → alpha/r = 0.5
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor>
        {
            [name + ".lora_down.weight"] = down, [name + ".lora_up.weight"] = up, [name + ".alpha"] = alpha,
        });
        using var plain = Base();
        using var sd = Base();
        var lines = ForeignAdditions.Apply(sd, [LoraSpec.Parse(path + ":0.8")], [], false);
        Assert.Contains(lines, l => l.Contains("merged 0 UNet and 1 text-encoder module(s) at scale 0.8"));
        var before = TextEncoderParameters(plain);
        var after = TextEncoderParameters(sd);
        var delta = after[QProj + ".weight"].to_type(ScalarType.Float64).sub(before[QProj + ".weight"].to_type(ScalarType.Float64));
        var expected = up.to_type(ScalarType.Float64).matmul(down.to_type(ScalarType.Float64)).Times(0.5 * 0.8);
        Fixture.AssertClose(delta, expected, 1e-5, "q_proj delta");
        Fixture.AssertIdentical(after[QProj + ".bias"], before[QProj + ".bias"], "q_proj bias");
        Fixture.AssertIdentical(after["text_model.encoder.layers.0.self_attn.k_proj.weight"], before["text_model.encoder.layers.0.self_attn.k_proj.weight"], "k_proj");
    }

    [Fact]
    public void One_by_one_and_three_by_three_conv_loras_merge_as_kohya_merges_them()
    {
        // sd-tiny: proj_in is a 1×1 Conv2d [32, 32, 1, 1] (use_linear_projection false), resnets.0.conv1 a 3×3 [32, 32, 3, 3].
        const string projIn = "down_blocks.0.attentions.0.proj_in", conv1 = "down_blocks.0.resnets.0.conv1";
        var path = Out("locon.safetensors");
        Directory.CreateDirectory(Out(""));
        var pDown = torch.randn(2, 32, 1, 1).Times(0.1);
        var pUp = torch.randn(32, 2, 1, 1).Times(0.1);
        var cDown = torch.randn(4, 32, 3, 3).Times(0.1);
        var cUp = torch.randn(32, 4, 1, 1).Times(0.1);
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor>
        {
            ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"] = pDown, ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight"] = pUp,
            ["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"] = cDown, ["lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"] = cUp,
        });
        using var plain = Base();
        using var sd = Base();
        ForeignAdditions.Apply(sd, [LoraSpec.Parse(path)], [], false);
        var before = UnetParameters(plain);
        var after = UnetParameters(sd);

        // kohya-ss/sd-scripts networks/lora.py merge_to: 1×1 → (up.squeeze @ down.squeeze).unsqueeze.unsqueeze;
        // 3×3 → conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3). No alpha key: scale 1.
        var expectedProj = pUp.squeeze(3).squeeze(2).matmul(pDown.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3);
        var expectedConv = torch.nn.functional.conv2d(cDown.permute(1, 0, 2, 3), cUp).permute(1, 0, 2, 3);
        Fixture.AssertClose(after[projIn + ".weight"].sub(before[projIn + ".weight"]), expectedProj, 1e-4, "proj_in 1×1");
        Fixture.AssertClose(after[conv1 + ".weight"].sub(before[conv1 + ".weight"]), expectedConv, 1e-4, "conv1 3×3");
    }

    [Fact]
    public void A_multi_vector_embedding_expands_its_word_into_n_tokens()
    {
        var path = Out("trio.safetensors");
        Directory.CreateDirectory(Out(""));
        var vectors = torch.randn(3, 32);
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor> { [EmbeddingImport.A1111Key] = vectors });
        using var sd = Base();
        var lines = ForeignAdditions.Apply(sd, [], [EmbeddingSpec.Parse(path)], false);
        Assert.Contains(lines, l => l.Contains("write \"trio\" in the prompt (3 vector(s), token id(s) 49408–49410)"));
        var a = sd.Tokenizer.EncodeUnpadded("a").Single();
        var photo = sd.Tokenizer.EncodeUnpadded("photo").Single();
        Assert.Equal([a, 49408L, 49409L, 49410L, photo], sd.Tokenizer.EncodeUnpadded("a trio photo"));
        Assert.Equal(49411, sd.TextEncoder.VocabSize);
        for (int i = 0; i < 3; i++)
        {
            using var row = sd.TextEncoder.GetTokenEmbedding(49408 + i);
            Fixture.AssertIdentical(row, vectors[i], $"trio vector {i}");
        }
    }

    [Fact]
    public void Embeddings_of_another_width_and_sdxl_embeddings_are_refused()
    {
        Directory.CreateDirectory(Out(""));
        var wide = Out("wide.safetensors");
        SafeTensorsFile.Save(wide, new Dictionary<string, Tensor> { ["emb_params"] = torch.randn(1, 768) });
        var sdxl = Out("xl.safetensors");
        SafeTensorsFile.Save(sdxl, new Dictionary<string, Tensor> { ["clip_l"] = torch.randn(1, 768), ["clip_g"] = torch.randn(1, 1280) });
        using var sd = Base();
        var e = Assert.Throws<InputException>(() => ForeignAdditions.Apply(sd, [], [EmbeddingSpec.Parse(wide)], false));
        Assert.Contains("[1, 768]", e.Message);
        Assert.Contains("width 32", e.Message);
        Assert.Contains("SDXL", Assert.Throws<InputException>(() => ForeignAdditions.Apply(sd, [], [EmbeddingSpec.Parse(sdxl)], false)).Message);
        Assert.Equal(49408, sd.TextEncoder.VocabSize); // nothing was added
    }

    /// A kohya file for sd-tiny's to_k [32, 32] plus four keys of modules it does not have.
    private string LoraWithUnknownKeys()
    {
        Directory.CreateDirectory(Out(""));
        var path = Out("mixed.safetensors");
        const string known = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
        const string unknown = "lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn2_to_k";
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor>
        {
            [known + ".lora_down.weight"] = torch.randn(2, 32), [known + ".lora_up.weight"] = torch.randn(32, 2),
            [unknown + ".lora_down.weight"] = torch.randn(2, 32), [unknown + ".lora_up.weight"] = torch.randn(32, 2),
            ["lora_unet_extra_a.alpha"] = torch.ones(1), ["lora_unet_extra_b.alpha"] = torch.ones(1),
        });
        return path;
    }

    [Fact]
    public void Unknown_keys_exit_2_listing_the_first_few_and_are_skipped_with_lora_ignore_unknown()
    {
        var path = LoraWithUnknownKeys();
        var outDir = Path.Combine(_dir, "s");
        var refused = CliRunner.Run("sample", "--model", Fixture.SdTiny, "--lora", path, "--prompt", "a photo", "--steps", "1", "--seed", "1", "--out", outDir);
        Assert.Equal(2, refused.ExitCode);
        var line = Assert.Single(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("cdiff:", StringComparison.Ordinal));
        Assert.Contains("4 key(s) are not LoRA keys of a module this model has", line);
        Assert.Contains("'lora_unet_down_blocks_7_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight'", line);
        Assert.Contains("and 1 more", line);
        Assert.Contains("--lora-ignore-unknown", line);
        Assert.False(Directory.Exists(outDir) && Directory.EnumerateFiles(outDir).Any(), "nothing sampled");

        var accepted = CliRunner.Run("sample", "--model", Fixture.SdTiny, "--lora", path, "--lora-ignore-unknown", "--prompt", "a photo", "--steps", "1", "--seed", "1", "--out", outDir);
        Assert.True(accepted.ExitCode == 0, accepted.Stderr);
        Assert.True(File.Exists(accepted.Stdout.Trim()));
    }

    [Fact]
    public void A_lora_for_another_width_exits_2_naming_the_key_and_both_shapes()
    {
        Directory.CreateDirectory(Out(""));
        var path = Out("wide.safetensors");
        const string name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor>
        {
            [name + ".lora_down.weight"] = torch.randn(2, 48), [name + ".lora_up.weight"] = torch.randn(32, 2), [name + ".alpha"] = OwnedScalars.Full([], 2, ScalarType.Float32),
        });
        var r = CliRunner.Run("sample", "--model", Fixture.SdTiny, "--lora", path, "--prompt", "a photo", "--steps", "1", "--out", Path.Combine(_dir, "s"));
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("cdiff:", StringComparison.Ordinal));
        Assert.Contains($"'{name}.lora_down.weight'", line);
        Assert.Contains("[32, 48] delta", line);
        Assert.Contains($"{ToK}.weight is [32, 32]", line);
    }

    [Fact]
    public void With_a_run_the_foreign_lora_goes_on_top_of_the_runs_merged_adapters()
    {
        var run = SyntheticRun.Create(RunDir, 2);
        var lora = LoraWithUnknownKeys();
        using var viaRun = RunModel.LoadForSampling(run);
        using var both = RunModel.LoadForSampling(run);
        ForeignAdditions.Apply(both, [LoraSpec.Parse(lora + ":0.5")], [], ignoreUnknownKeys: true);
        using var file = SafeTensorsFile.Open(lora);
        const string known = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
        using var up = file.Read(known + ".lora_up.weight");
        using var down = file.Read(known + ".lora_down.weight");
        var expected = up.to_type(ScalarType.Float64).matmul(down.to_type(ScalarType.Float64)).Times(0.5); // no alpha: scale 1
        var delta = UnetParameters(both)[ToK + ".weight"].to_type(ScalarType.Float64).sub(UnetParameters(viaRun)[ToK + ".weight"].to_type(ScalarType.Float64));
        Fixture.AssertClose(delta, expected, 1e-5, "foreign delta on top of the run");
        Assert.True(both.Tokenizer.TryGetConceptTokenId("<v1>", out _), "the run's concept is still there");
    }

    [Fact]
    public void A_kohya_file_with_CompVis_module_names_merges_as_the_diffusers_named_one_does()
    {
        SyntheticRun.Create(RunDir, 2);
        var lora = Out("concepts.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.Kohya, OutPath = lora });
        var renamed = Out("compvis.safetensors");
        var tensors = SafeTensorsFile.Load(lora);
        IReadOnlyDictionary<string, string> metadata;
        using (var f = SafeTensorsFile.Open(lora)) metadata = f.Metadata;
        var compVis = tensors.ToDictionary(kv => CompVis(kv.Key), kv => kv.Value);
        Assert.DoesNotContain(compVis.Keys, k => k.StartsWith("lora_unet_down_", StringComparison.Ordinal) || k.StartsWith("lora_unet_mid_", StringComparison.Ordinal)
            || k.StartsWith("lora_unet_up_", StringComparison.Ordinal)); // every module renamed
        Assert.Contains(compVis.Keys, k => k.StartsWith("lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.", StringComparison.Ordinal));
        Assert.Contains(compVis.Keys, k => k.StartsWith("lora_unet_middle_block_1_transformer_blocks_0_attn2_to_v.", StringComparison.Ordinal));
        SafeTensorsFile.Save(renamed, compVis, metadata);

        using var viaDiffusersNames = Base();
        using var viaCompVisNames = Base();
        ForeignAdditions.Apply(viaDiffusersNames, [LoraSpec.Parse(lora)], [], false);
        var lines = ForeignAdditions.Apply(viaCompVisNames, [LoraSpec.Parse(renamed)], [], false);
        Assert.Contains(lines, l => l.Contains("merged 22 UNet and 0 text-encoder module(s)"));
        var expected = UnetParameters(viaDiffusersNames);
        foreach (var (name, p) in UnetParameters(viaCompVisNames)) Fixture.AssertIdentical(expected[name], p, $"unet {name}");
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// The CompVis names of sd-tiny's 11 attention blocks, written out by hand: 3 levels of 2 layers, so input_blocks
    /// 1, 2 / 4, 5 hold down levels 0 / 1 (input_blocks.0 is conv_in, 3 and 6 the downsamplers); output_blocks come in
    /// threes per up level, and up level 0 has no attentions (UpBlock2D), so up levels 1 / 2 are output_blocks 3-5 / 6-8.
    private static string CompVis(string key)
    {
        var map = new (string Diffusers, string CompVis)[]
        {
            ("lora_unet_down_blocks_0_attentions_0_", "lora_unet_input_blocks_1_1_"),
            ("lora_unet_down_blocks_0_attentions_1_", "lora_unet_input_blocks_2_1_"),
            ("lora_unet_down_blocks_1_attentions_0_", "lora_unet_input_blocks_4_1_"),
            ("lora_unet_down_blocks_1_attentions_1_", "lora_unet_input_blocks_5_1_"),
            ("lora_unet_mid_block_attentions_0_", "lora_unet_middle_block_1_"),
            ("lora_unet_up_blocks_1_attentions_0_", "lora_unet_output_blocks_3_1_"),
            ("lora_unet_up_blocks_1_attentions_1_", "lora_unet_output_blocks_4_1_"),
            ("lora_unet_up_blocks_1_attentions_2_", "lora_unet_output_blocks_5_1_"),
            ("lora_unet_up_blocks_2_attentions_0_", "lora_unet_output_blocks_6_1_"),
            ("lora_unet_up_blocks_2_attentions_1_", "lora_unet_output_blocks_7_1_"),
            ("lora_unet_up_blocks_2_attentions_2_", "lora_unet_output_blocks_8_1_"),
        };
        foreach (var (d, c) in map) if (key.StartsWith(d, StringComparison.Ordinal)) return c + key[d.Length..];
        return key;
    }
}
