using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static ContinualDiffusion.Tests.Lora.LoraTestData;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Lora;

public class AdapterFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-lora-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Prefix0 = "down_blocks.0.attentions.0.transformer_blocks.0.attn2";
    private const string Prefix1 = "up_blocks.1.attentions.2.transformer_blocks.0.attn2";

    /// Two cross-attentions (dim 6, context 4), injected at rank 2 with trained-looking factors.
    private static IReadOnlyList<ContinualLoraLinear> TrainedLayers(Generator g)
    {
        var a0 = new FakeAttention(6, 4, g);
        var a1 = new FakeAttention(6, 4, g);
        var targets = LoraTarget.KeyValue(Prefix0, a0.to_k, a0.to_v, a0.ReplaceProjection)
            .Concat(LoraTarget.KeyValue(Prefix1, a1.to_k, a1.to_v, a1.ReplaceProjection));
        var layers = LoraInjector.Inject(targets, rank: 2, generator: g);
        foreach (var l in layers) SetFactors(l, Randn(g, 6, 2), Randn(g, 2, 4));
        return layers;
    }

    private static AdapterExpectation Expect(IEnumerable<ContinualLoraLinear> layers) =>
        AdapterExpectation.ForLayers(layers) with { TokenHiddenSize = 4, BaseModelHash = Hash, Rank = 2, Method = AdapterMethod.CLora };

    private string SaveTask(IReadOnlyList<ContinualLoraLinear> layers, int task, Generator g, string? name = null)
    {
        var path = Path.Combine(_dir, name ?? $"task{task}.safetensors");
        using var adapter = AdapterSet.FromLayers(layers, Randn(g, 1, 4), new AdapterMetadata(task, $"<v{task}>", 2, AdapterMethod.CLora, Hash));
        AdapterFile.Save(path, adapter);
        return path;
    }

    [Fact]
    public void Adapter_file_round_trip()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(21);
        var layers = TrainedLayers(g);
        var token = Randn(g, 1, 4);
        var path = Path.Combine(_dir, "task3.safetensors");
        var metadata = new AdapterMetadata(3, "<v3>", 2, AdapterMethod.CLora, Hash);
        using (var adapter = AdapterSet.FromLayers(layers, token, metadata)) AdapterFile.Save(path, adapter);

        using (var raw = SafeTensorsFile.Open(path))
        {
            Assert.Contains($"{Prefix0}.to_k.lora_A", raw.Tensors.Keys);
            Assert.Contains($"{Prefix1}.to_v.lora_B", raw.Tensors.Keys);
            Assert.Equal(9, raw.Tensors.Count); // 4 layers x 2 factors + token_embedding
            Assert.Equal("3", raw.Metadata["task"]);
            Assert.Equal("<v3>", raw.Metadata["token"]);
            Assert.Equal("clora", raw.Metadata["method"]);
            Assert.Equal("1", raw.Metadata["format_version"]);
        }

        using var loaded = AdapterFile.Load(path, Expect(layers));
        Assert.Equal(metadata, loaded.Metadata);
        Assert.Equal(layers.Select(l => l.LayerName).Order(StringComparer.Ordinal), loaded.Layers.Keys.Order(StringComparer.Ordinal));
        foreach (var l in layers)
        {
            Assert.True(loaded.Layers[l.LayerName].A.equal(l.LoraA).all().item<bool>(), l.LayerName);
            Assert.True(loaded.Layers[l.LayerName].B.equal(l.LoraB).all().item<bool>(), l.LayerName);
        }
        Assert.True(loaded.TokenEmbedding.equal(token).all().item<bool>());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    /// Each case rewrites a good file and names a fragment the error must contain besides the path.
    public static TheoryData<string, string> Corruptions => new()
    {
        { "truncated", "truncated" },
        { "rank metadata disagrees with the tensors", $"{Prefix0}.to_k.lora_A" },
        { "a layer is missing", $"missing key '{Prefix1}.to_v.lora_A'" },
        { "lora_B is missing", $"missing key '{Prefix0}.to_v.lora_B'" },
        { "shape does not fit the model", $"{Prefix0}.to_k.lora_B" },
        { "token embedding missing", "missing key 'token_embedding'" },
        { "token embedding too wide", "token_embedding" },
        { "unknown key", "unexpected key 'stray'" },
        { "extra layer", "unexpected key 'mid_block.attn2.to_k.lora_A'" },
        { "other base model", "base_model_hash" },
        { "NaN factor", $"{Prefix1}.to_k.lora_A" },
        { "newer format version", "format_version" },
        { "not an adapter", "cdiff_format" },
        { "bad task number", "'task'" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Corrupt_or_mismatched_adapter_file_is_refused(string corruption, string expected)
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(4);
        var layers = TrainedLayers(g);
        var path = SaveTask(layers, 1, g);
        Corrupt(path, corruption);

        var e = Assert.ThrowsAny<Exception>(() => AdapterFile.Load(path, Expect(layers)));
        Assert.True(e is AdapterFormatException or SafeTensorsFormatException, $"{corruption}: {e.GetType().Name}: {e.Message}");
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    private static void Corrupt(string path, string corruption)
    {
        if (corruption == "truncated")
        {
            var bytes = File.ReadAllBytes(path);
            File.WriteAllBytes(path, bytes[..(bytes.Length - 40)]);
            return;
        }
        Dictionary<string, Tensor> tensors;
        Dictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(path))
        {
            tensors = f.ReadAll();
            meta = f.Metadata.ToDictionary();
        }
        switch (corruption)
        {
            case "rank metadata disagrees with the tensors": meta["rank"] = "3"; break;
            case "a layer is missing": tensors.Remove($"{Prefix1}.to_v.lora_A"); tensors.Remove($"{Prefix1}.to_v.lora_B"); break;
            case "lora_B is missing": tensors.Remove($"{Prefix0}.to_v.lora_B"); break;
            case "shape does not fit the model": tensors[$"{Prefix0}.to_k.lora_B"] = torch.zeros(2, 5); break;
            case "token embedding missing": tensors.Remove("token_embedding"); break;
            case "token embedding too wide": tensors["token_embedding"] = torch.zeros(1, 8); break;
            case "unknown key": tensors["stray"] = torch.zeros(1); break;
            case "extra layer":
                tensors["mid_block.attn2.to_k.lora_A"] = torch.zeros(6, 2);
                tensors["mid_block.attn2.to_k.lora_B"] = torch.zeros(2, 4);
                break;
            case "other base model": meta["base_model_hash"] = "sha256:other"; break;
            case "NaN factor": tensors[$"{Prefix1}.to_k.lora_A"][1, 1] = torch.tensor(float.NaN); break;
            case "newer format version": meta["format_version"] = "2"; break;
            case "not an adapter": meta.Remove("cdiff_format"); break;
            case "bad task number": meta["task"] = "0"; break;
            default: throw new ArgumentException(corruption);
        }
        SafeTensorsFile.Save(path, tensors, meta);
    }

    [Fact]
    public void Adapter_sequence_must_be_tasks_1_to_n_of_one_base_model()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(8);
        var layers = TrainedLayers(g);
        var t1 = SaveTask(layers, 1, g);
        var t2 = SaveTask(layers, 2, g);
        var t3 = SaveTask(layers, 3, g);

        var ok = AdapterFile.LoadSequence([t3, t1, t2], Expect(layers));
        Assert.Equal([1, 2, 3], ok.Select(a => a.Metadata.Task).ToArray());
        foreach (var a in ok) a.Dispose();

        var gap = Assert.Throws<AdapterFormatException>(() => AdapterFile.LoadSequence([t1, t3]));
        Assert.Contains(t3, gap.Message);
        Assert.Contains("task 2 is missing", gap.Message);

        var dup = SaveTask(layers, 2, g, "task2-again.safetensors");
        var twice = Assert.Throws<AdapterFormatException>(() => AdapterFile.LoadSequence([t1, t2, dup]));
        Assert.Contains("task 2 is also in", twice.Message);

        Dictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(t2)) meta = f.Metadata.ToDictionary();
        var tensors = SafeTensorsFile.Load(t2);
        meta["base_model_hash"] = "sha256:other";
        var foreign = Path.Combine(_dir, "foreign.safetensors");
        SafeTensorsFile.Save(foreign, tensors, meta);
        var other = Assert.Throws<AdapterFormatException>(() => AdapterFile.LoadSequence([t1, foreign]));
        Assert.Contains(foreign, other.Message);
        Assert.Contains("base_model_hash", other.Message);
    }

    [Fact]
    public void Past_deltas_from_files_sum_the_previous_tasks()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(13);
        var layers = TrainedLayers(g);
        var t1 = SaveTask(layers, 1, g);
        var expected1 = layers.ToDictionary(l => l.LayerName, l => l.CurrentDelta().detach());
        foreach (var l in layers) SetFactors(l, Randn(g, 6, 2), Randn(g, 2, 4));
        var t2 = SaveTask(layers, 2, g);
        var weights = layers.ToDictionary(l => l.LayerName, l => (Tensor)l.Base.weight!);

        var none = DeltaMerger.PastDeltas(weights, []);
        Assert.All(none.Values, p => Assert.Equal(0, p.count_nonzero().item<long>()));
        var past = DeltaMerger.PastDeltas(weights, [t1, t2]);
        foreach (var l in layers)
            Support.Fixture.AssertClose(past[l.LayerName], expected1[l.LayerName].Plus(l.CurrentDelta().detach()), 1e-6, l.LayerName);
    }

    [Fact]
    public void A_dense_adapter_round_trips_and_a_token_only_adapter_holds_the_token_alone()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(5);
        var layers = TrainedLayers(g);
        var expected = AdapterExpectation.ForLayers(layers) with { TokenHiddenSize = 4, BaseModelHash = Hash };
        var deltas = layers.Select(l => (l.LayerName, Randn(g, 6, 4))).ToList();
        var dense = Path.Combine(_dir, "dense.safetensors");
        using (var a = AdapterSet.FromDense(deltas, Randn(g, 1, 4), new AdapterMetadata(1, "<v1>", 0, AdapterMethod.CustomDiffusion, Hash)))
            AdapterFile.Save(dense, a);
        using (var raw = SafeTensorsFile.Open(dense))
        {
            Assert.Equal(5, raw.Tensors.Count); // 4 layers' .delta + token_embedding
            Assert.Contains($"{Prefix0}.to_k.delta", raw.Tensors.Keys);
            Assert.Equal(("custom-diffusion", "0"), (raw.Metadata["method"], raw.Metadata["rank"]));
        }
        using (var back = AdapterFile.Load(dense, expected))
        {
            Assert.Empty(back.Layers);
            foreach (var (name, d) in deltas) Assert.True(back.DenseLayers[name].equal(d).all().item<bool>(), name);
        }

        var ti = Path.Combine(_dir, "ti.safetensors");
        using (var a = AdapterSet.FromDense([], Randn(g, 1, 4), new AdapterMetadata(1, "<v1>", 0, AdapterMethod.TextualInversion, Hash)))
            AdapterFile.Save(ti, a);
        using (var raw = SafeTensorsFile.Open(ti)) Assert.Equal(["token_embedding"], raw.Tensors.Keys);
        using (var back = AdapterFile.Load(ti, expected))
        {
            Assert.Empty(back.LayerNames);
            Assert.Null(back.Delta($"{Prefix0}.to_k"));
        }
    }

    [Fact]
    public void Keys_that_do_not_match_the_method_are_refused_naming_the_file_and_key()
    {
        using var scope = torch.NewDisposeScope();
        using var g = new Generator(6);
        var layers = TrainedLayers(g);
        var path = Path.Combine(_dir, "mixed.safetensors");
        var tensors = new Dictionary<string, Tensor> { ["token_embedding"] = Randn(g, 1, 4), [$"{Prefix0}.to_k.delta"] = Randn(g, 6, 4) };
        var metadata = new AdapterMetadata(1, "<v1>", 0, AdapterMethod.TextualInversion, Hash).ToSafeTensorsMetadata();
        SafeTensorsFile.Save(path, tensors, metadata);
        var e = Assert.Throws<AdapterFormatException>(() => AdapterFile.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"{Prefix0}.to_k.delta", e.Message);

        var rankless = new Dictionary<string, string>(new AdapterMetadata(1, "<v1>", 2, AdapterMethod.CLora, Hash).ToSafeTensorsMetadata()) { ["method"] = "custom-diffusion" };
        SafeTensorsFile.Save(path, tensors, rankless);
        var r = Assert.Throws<AdapterFormatException>(() => AdapterFile.Load(path));
        Assert.Contains("'rank'", r.Message);
    }
}
