using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Interop.Import;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop.Export;

/// `export --format merged-single-file`: the written file against the single file diffusers' conversion script wrote
/// (tests/fixtures/sd1-single-file), and exported runs sampled through `sample --model FILE --embedding …` against
/// `sample --run`. The tolerance is zero throughout: the merged weights are DeltaMerger's on the same float32 weights
/// `sample --run` merges into, every other tensor is copied in its stored dtype, the reader maps each key back to the
/// tensor it was written from, and the embedding files hold the adapters' own rows, so weights, text states and
/// images are bit-identical.
public class MergedSingleFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-export-single-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RunDir => Path.Combine(_dir, "run");
    private string Out(string name) => Path.Combine(_dir, "out", name);

    [Fact]
    public void The_sd1_fixture_read_and_written_back_without_tasks_is_the_conversion_scripts_file_key_for_key_and_bit_for_bit()
    {
        var written = Out("fixture.safetensors");
        Directory.CreateDirectory(Out(""));
        using (var source = BaseModelSource.Open(Sd1SingleFile.Model))
            MergedSingleFileExport.Write(written, source, adapters: [], SyntheticRun.LayerNames, metadata: null);

        var listed = Sd1SingleFile.ReferenceJson.GetProperty("single_file").GetProperty("keys").EnumerateArray().Select(k => k.GetString()!);
        using var file = SafeTensorsFile.Open(written);
        Assert.Equal(listed.Order(StringComparer.Ordinal), file.Tensors.Keys.Order(StringComparer.Ordinal));
        AssertSameFile(Sd1SingleFile.Model, written);
    }

    [Fact]
    public void A_diffusers_folder_written_as_one_file_reads_back_as_the_same_tensors()
    {
        var written = Out("sd-tiny.safetensors");
        Directory.CreateDirectory(Out(""));
        using (var source = BaseModelSource.Open(Fixture.SdTiny))
            MergedSingleFileExport.Write(written, source, adapters: [], SyntheticRun.LayerNames, metadata: null);

        using var file = SafeTensorsFile.Open(written);
        Assert.All(file.Tensors.Keys, k => Assert.True(k.StartsWith(LdmKeyMap.UnetPrefix, StringComparison.Ordinal)
            || k.StartsWith(LdmKeyMap.VaePrefix, StringComparison.Ordinal) || k.StartsWith(LdmKeyMap.ClipPrefix + "text_model.", StringComparison.Ordinal), k));
        Assert.Equal([64L, 64L, 1L, 1L], file.Tensors["first_stage_model.decoder.mid.attn_1.q.weight"].Shape); // diffusers' Linear [C, C] as LDM's 1×1 conv
        Assert.True(file.Tensors.ContainsKey("model.diffusion_model.output_blocks.2.1.conv.weight")); // upsampler of a level without attention
        Assert.True(file.Tensors.ContainsKey("model.diffusion_model.output_blocks.5.2.conv.weight")); // and of one with attention

        using var folder = BaseModelSource.Open(Fixture.SdTiny);
        using var single = BaseModelSource.Open(written);
        using var expected = ModelTensors.Open(folder);
        using var actual = ModelTensors.Open(single);
        AssertSameTensors(expected, actual);
    }

    [Fact]
    public void A_run_on_a_diffusers_folder_exported_as_one_file_with_its_embeddings_draws_what_sample_run_draws()
    {
        var run = SyntheticRun.Create(RunDir, 2, 3);
        var path = Out("merged.safetensors");
        var result = RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = path });
        Assert.Equal([path, Out("v1.safetensors"), Out("v2.safetensors")], result.Written);
        Assert.Contains(result.Messages, m => m.StartsWith($"wrote {path}: the base model with tasks 1..2 merged (clora), an original-LDM single file (stable-diffusion-v1)", StringComparison.Ordinal));
        Assert.Contains(result.Messages, m => m.StartsWith($"<v2>: write \"v2\" in the prompt ({Out("v2.safetensors")}; A1111/Forge: put it in embeddings/ and the checkpoint in models/Stable-diffusion/", StringComparison.Ordinal));
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal("tasks 1..2", file.Metadata[ExportOutput.ExportMetadataKey]);
            Assert.Equal("stable-diffusion-v1", file.Metadata["modelspec.architecture"]);
            Assert.Equal("v1, v2", file.Metadata["modelspec.trigger_phrase"]);
            Assert.Equal("F32", file.Tensors["model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"].DType);
        }
        foreach (var t in new[] { 1, 2 })
            Fixture.AssertIdentical(EmbeddingFiles.Read(Out($"v{t}.safetensors")), SyntheticRun.TokenEmbedding(run, t), $"<v{t}> embedding");

        using var viaRun = RunModel.LoadForSampling(run);
        using var viaFile = StableDiffusion.Open(path);
        ForeignAdditions.Apply(viaFile, [], [EmbeddingSpec.Parse(Out("v1.safetensors")), EmbeddingSpec.Parse(Out("v2.safetensors"))], ignoreUnknownKeys: false);
        AssertSameModelAndImage(viaRun, viaFile, "a photo of <v1> and <v2>", "a photo of v1 and v2", side: 32);
    }

    [Fact]
    public void A_run_on_a_single_file_exported_with_an_embedding_prefix_keeps_every_other_tensor_and_draws_what_sample_run_draws()
    {
        var run = SyntheticRun.CreateOn(Sd1SingleFile.Model, RunDir, 3);
        var path = Out("merged.safetensors");
        var result = RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = path, EmbeddingPrefix = "faces-" });
        var embedding = Out("faces-v1.safetensors");
        Assert.Equal([path, embedding], result.Written);
        Assert.False(File.Exists(Out("v1.safetensors")));
        Assert.Contains(result.Messages, m => m.StartsWith($"<v1>: write \"faces-v1\" in the prompt ({embedding};", StringComparison.Ordinal));
        Assert.Contains(result.Messages, m => m.Contains("ComfyUI: \"embedding:faces-v1\"") && m.EndsWith($"cdiff: sample --model {path} --embedding {embedding})", StringComparison.Ordinal));

        // The base file's keys, its tensors bit for bit except the 22 merged K/V weights.
        HashSet<string> merged;
        using (var reader = SingleFileCheckpoint.Open(Sd1SingleFile.Model))
            merged = SyntheticRun.LayerNames.Select(l => reader.Mapping.Unet[l + ".weight"].SourceKey).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(22, merged.Count);
        AssertSameFile(Sd1SingleFile.Model, path, except: merged);
        using (var file = SafeTensorsFile.Open(path))
            Assert.Equal("faces-v1", file.Metadata["modelspec.trigger_phrase"]);

        using var viaRun = RunModel.LoadForSampling(run);
        using var viaFile = StableDiffusion.Open(path);
        var lines = ForeignAdditions.Apply(viaFile, [], [EmbeddingSpec.Parse(embedding)], ignoreUnknownKeys: false);
        Assert.Contains(lines, l => l.Contains("write \"faces-v1\" in the prompt"));
        AssertSameModelAndImage(viaRun, viaFile, "a photo of <v1>", "a photo of faces-v1", side: 64);
    }

    [Fact]
    public void Overwrite_replaces_an_earlier_export_and_nothing_else()
    {
        SyntheticRun.Create(RunDir, 2);
        var path = Out("merged.safetensors");
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = path });
        Assert.Contains("already exists; pass --overwrite",
            Assert.Throws<InputException>(() => RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = path })).Message);
        RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = path, Overwrite = true });
        Assert.Empty(Directory.GetFiles(Out(""), ".*")); // no temp file left

        // Someone else's checkpoint under that name is not replaced, even with --overwrite.
        var other = Out("other.safetensors");
        File.Copy(Sd1SingleFile.Model, other);
        var e = Assert.Throws<InputException>(() => RunExport.Export(new ExportRequest { RunDir = RunDir, Format = ExportFormat.MergedSingleFile, OutPath = other, Overwrite = true }));
        Assert.Contains("is not an earlier export", e.Message);
        Assert.Equal(new FileInfo(Sd1SingleFile.Model).Length, new FileInfo(other).Length);
    }

    /// Same keys, dtypes, shapes and bytes, except the keys in `except` (which must differ).
    internal static void AssertSameFile(string expectedPath, string actualPath, IReadOnlySet<string>? except = null)
    {
        using var expected = SafeTensorsFile.Open(expectedPath);
        using var actual = SafeTensorsFile.Open(actualPath);
        Assert.Equal(expected.Tensors.Keys.Order(StringComparer.Ordinal), actual.Tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, info) in expected.Tensors)
        {
            using var scope = torch.NewDisposeScope();
            var a = actual.Tensors[key];
            Assert.True(info.Shape.SequenceEqual(a.Shape), $"{key}: shape [{string.Join(", ", a.Shape)}], expected [{string.Join(", ", info.Shape)}]");
            bool same = expected.Read(key, keepDType: true).bytes.ToArray().AsSpan().SequenceEqual(actual.Read(key, keepDType: true).bytes.ToArray());
            if (except?.Contains(key) == true) Assert.False(same, $"{key}: expected a merged weight, found the base's");
            else
            {
                Assert.Equal(info.DType, a.DType);
                Assert.True(same, $"{key}: bytes differ");
            }
        }
    }

    /// Every tensor of every component: same names, dtypes, shapes and bytes.
    internal static void AssertSameTensors(ModelTensors expected, ModelTensors actual)
    {
        foreach (var component in new[] { SdComponent.Unet, SdComponent.Vae, SdComponent.TextEncoder })
        {
            var e = expected.For(component);
            var a = actual.For(component);
            Assert.Equal(e.Keys.Order(StringComparer.Ordinal), a.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, t) in e)
            {
                using var scope = torch.NewDisposeScope();
                Assert.Equal(t.DType, a[name].DType);
                Assert.True(t.Shape.SequenceEqual(a[name].Shape), $"{component} {name}: shape");
                Assert.True(t.Read(true).contiguous().bytes.ToArray().AsSpan().SequenceEqual(a[name].Read(true).contiguous().bytes.ToArray()), $"{component} {name}: bytes differ");
            }
        }
    }

    /// `sample --run` and `sample --model FILE --embedding …` built in process: UNet and VAE weights, text-encoder
    /// states and the image, all bit-identical.
    private static void AssertSameModelAndImage(StableDiffusion viaRun, StableDiffusion viaFile, string runPrompt, string filePrompt, int side)
    {
        var fileUnet = viaFile.Unet.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        foreach (var (name, p) in viaRun.Unet.named_parameters()) Fixture.AssertIdentical(fileUnet[name], p, $"unet {name}");
        var fileVae = viaFile.Vae.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        foreach (var (name, p) in viaRun.Vae.named_parameters()) Fixture.AssertIdentical(fileVae[name], p, $"vae {name}");
        Assert.Equal(viaRun.Tokenizer.Encode(runPrompt).InputIds, viaFile.Tokenizer.Encode(filePrompt).InputIds);
        using var runIds = viaRun.Tokenize([runPrompt]);
        using var fileIds = viaFile.Tokenize([filePrompt]);
        using var a = viaRun.TextEncoder.forward(runIds);
        using var b = viaFile.TextEncoder.forward(fileIds);
        Fixture.AssertIdentical(b, a, "text encoder states");
        using var imageRun = new TextToImagePipeline(viaRun).Generate(new SampleRequest { Prompt = runPrompt, Steps = 2, Seed = 3, Height = side, Width = side });
        using var imageFile = new TextToImagePipeline(viaFile).Generate(new SampleRequest { Prompt = filePrompt, Steps = 2, Seed = 3, Height = side, Width = side });
        Fixture.AssertIdentical(imageFile, imageRun, "the same image from the run and from the exported single file and embeddings");
    }
}
