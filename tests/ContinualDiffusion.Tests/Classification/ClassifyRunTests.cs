using System.Text.Json.Nodes;
using ContinualDiffusion.Classification;
using Xunit;

namespace ContinualDiffusion.Tests.Classification;

/// A classification manifest is checked when read: every value a later command would act on is in range.
public sealed class ClassifyRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-classify-run-").FullName;

    [Theory]
    [InlineData("method", "\"dreambooth\"", "key 'method' is 'dreambooth'")]
    [InlineData("dataset", "\"cifar\"", "key 'dataset' is 'cifar'")]
    [InlineData("backbone.sha256", "\"abc\"", "'backbone.sha256' is not a SHA-256")]
    [InlineData("options.epochs", "0", "options: epochs is 0")]
    [InlineData("options.batch_size", "-4", "options: batch_size is -4")]
    [InlineData("options.rank", "0", "options: rank is 0")]
    [InlineData("options.lambda", "-1", "options: lambda is -1")]
    [InlineData("options.top_n", "11", "options: top_n is 11")]
    [InlineData("tasks.0.options.learning_rate", "0", "task 1's options: learning_rate is 0")]
    [InlineData("tasks.0.classes", "[0, 0]", "class 0 appears in two tasks")]
    public void A_manifest_value_out_of_range_is_refused_naming_the_manifest_and_key(string path, string json, string expected)
    {
        var run = new ClassifyRun(_dir);
        run.Write(Valid());
        Assert.Equal("clora", run.Read().Method); // the valid one reads

        var root = JsonNode.Parse(File.ReadAllText(run.ManifestPath))!;
        var parts = path.Split('.');
        JsonNode node = root;
        foreach (var p in parts[..^1]) node = int.TryParse(p, out var i) ? node[i]! : node[p]!;
        node[parts[^1]] = JsonNode.Parse(json);
        File.WriteAllText(run.ManifestPath, root.ToJsonString());

        var e = Assert.Throws<InputException>(() => run.Read());
        Assert.StartsWith(run.ManifestPath + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    private static ClassifyManifest Valid() => new()
    {
        Method = "clora",
        Backbone = new ClassifyManifest.BackboneRef("/nowhere/vit.safetensors", new string('a', 64)),
        Options = new ClassifyOptions(),
        Dataset = "mnist",
        ClassNames = [.. Enumerable.Range(0, 10).Select(i => $"{i}")],
        Tasks =
        [
            new ClassifyTaskEntry
            {
                Task = 1, Classes = [0, 1], TrainImages = 10, Steps = 1, FinalLoss = 0.5, Seconds = 1, State = ClassifyRun.StateFileName(1),
                StateSha256 = new string('b', 64), TrainedValues = 10, Options = new ClassifyOptions(),
            },
        ],
    };

    public void Dispose() => Directory.Delete(_dir, true);
}
