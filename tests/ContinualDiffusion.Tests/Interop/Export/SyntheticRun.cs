using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Interop.Export;

/// A finished run on the sd-tiny fixture without training: each task's adapter has random non-zero up AND down factors
/// (a trained adapter's up factor starts at zero and moves little in a few steps, which would make a round trip
/// trivially right) and a random token embedding, written and recorded exactly as training commits a task.
public static class SyntheticRun
{
    public static UNetConfig TinyUnet => UNetConfig.Load(Path.Combine(Fixture.SdTiny, "unet", "config.json"));

    public static IReadOnlyList<string> LayerNames => CrossAttentionLayers.KeyValue(TinyUnet).Select(l => l.Name).ToList();

    /// Tasks 1..ranks.Length with these ranks, on the sd-tiny folder.
    public static RunDirectory Create(string dir, params int[] ranks) => CreateOn(Fixture.SdTiny, dir, ranks);

    /// The same on another base model with sd-tiny's UNet layout (the sd1-single-file fixture's model is one).
    public static RunDirectory CreateOn(string model, string dir, params int[] ranks)
    {
        var run = new RunDirectory(dir);
        Directory.CreateDirectory(run.AdaptersDir);
        string hash;
        BaseModelInfo baseModel;
        using (var source = BaseModelSource.Open(model))
        {
            hash = source.ComputeIdentityHash();
            baseModel = BaseModelInfo.Of(source, hash);
        }
        var layers = CrossAttentionLayers.KeyValue(TinyUnet);
        var tasks = new List<TaskEntry>();
        for (int t = 1; t <= ranks.Length; t++)
        {
            int r = ranks[t - 1];
            using var scope = torch.NewDisposeScope();
            var factors = layers.ToDictionary(l => l.Name,
                l => new LoraFactors(torch.randn(l.Shape.Out, r).Times(0.1), torch.randn(r, l.Shape.In).Times(0.1)), StringComparer.Ordinal);
            using var adapter = new AdapterSet(new AdapterMetadata(t, $"<v{t}>", r, AdapterMethod.CLora, hash), factors, torch.randn(1, 32));
            var path = run.AdapterPath(t);
            AdapterFile.Save(path, adapter);
            tasks.Add(new TaskEntry
            {
                Task = t, Token = $"<v{t}>", TokenId = 49407 + t, AdapterFile = Path.GetRelativePath(run.Root, path),
                AdapterSha256 = RunDirectory.Sha256File(path), AdapterBytes = new FileInfo(path).Length, ImageSetHash = "synthetic",
                ImageCount = 3, Method = "clora", Rank = r, Lambda = 1, Steps = 2, LearningRate = 1e-3, Seed = t,
                FinalLoss = 0.1, WallTimeSeconds = 1, FinishedUtc = DateTimeOffset.UnixEpoch,
            });
        }
        run.WriteManifest(new RunManifest { BaseModel = baseModel, Method = "clora", Tasks = tasks });
        return run;
    }

    /// Σ_{t ≤ last} A_t·B_t per layer in float64, from the adapter files (what `sample --run` merges).
    public static Dictionary<string, Tensor> ExpectedDeltas(RunDirectory run, int last)
    {
        var sums = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (int t = 1; t <= last; t++)
        {
            using var adapter = AdapterFile.Load(run.AdapterPath(t));
            foreach (var (name, f) in adapter.Layers)
            {
                var delta = f.A.to_type(ScalarType.Float64).matmul(f.B.to_type(ScalarType.Float64));
                sums[name] = sums.TryGetValue(name, out var acc) ? acc.Plus(delta) : delta;
            }
        }
        return sums;
    }

    public static Tensor TokenEmbedding(RunDirectory run, int task)
    {
        using var adapter = AdapterFile.Load(run.AdapterPath(task));
        return adapter.TokenEmbedding.clone();
    }

    /// Every layer's delta within `relTol` (Fixture.RelError: max |a − b| / max |b|) of the expected one, and no other layer.
    public static void AssertSameDeltas(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, double relTol, string what)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, e) in expected) Fixture.AssertClose(actual[name], e, relTol, $"{what}: {name}");
    }
}
