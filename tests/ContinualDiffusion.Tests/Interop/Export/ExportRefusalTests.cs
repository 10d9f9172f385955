using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Interop.Export;

/// Bad `cdiff export` input through the real CLI: one line on stderr, exit code 2, nothing written. Every refusal here
/// happens before a tensor is read (the manifest's adapters do not even exist), so these tests do no tensor math.
public class ExportRefusalTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-export-refusal-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RunDir => Path.Combine(_dir, "run");

    /// A run of three finished tasks whose adapter files are never read by the refusals under test.
    private void WriteRun()
    {
        var run = new RunDirectory(RunDir);
        Directory.CreateDirectory(run.Root);
        var tasks = Enumerable.Range(1, 3).Select(t => new TaskEntry
        {
            Task = t, Token = $"<v{t}>", TokenId = 49407 + t, AdapterFile = $"adapters/task-{t:D3}.safetensors", AdapterSha256 = new string('0', 64),
            AdapterBytes = 1, ImageSetHash = "abc", ImageCount = 3, Method = "clora", Rank = 2, Lambda = 1, Steps = 2, LearningRate = 1e-3,
            Seed = 0, FinalLoss = 0.1, WallTimeSeconds = 1, FinishedUtc = DateTimeOffset.UnixEpoch,
        }).ToList();
        run.WriteManifest(new RunManifest { BaseModel = new BaseModelInfo(Fixture.SdTiny, "h"), Method = "clora", Tasks = tasks });
    }

    [Theory]
    [InlineData("export --run RUN --format kohya --out OUT/x.safetensors --tasks 4", "task 4 is not one of them")]
    [InlineData("export --run RUN --format kohya --out OUT/x.safetensors --tasks 2..3", "an export starts at task 1")]
    [InlineData("export --run RUN --format ckpt --out OUT/x.safetensors", "ckpt")]
    [InlineData("export --run RUN --out OUT/x.safetensors", "--format")]
    [InlineData("export --run RUN --format kohya", "--out")]
    [InlineData("export --run RUN --format kohya --out OUT/existing.safetensors", "already exists; pass --overwrite")]
    [InlineData("export --run RUN --format kohya --out OUT/v2.safetensors", "concept embedding file v2.safetensors")]
    [InlineData("export --run RUN --format peft --out OUT/existing-dir", "already exists; pass --overwrite")]
    [InlineData("export --run RUN --format merged --out OUT/m --rank 4", "only the LoRA formats")]
    [InlineData("export --run OUT/no-run --format kohya --out OUT/x.safetensors", "not a cdiff run directory")]
    [InlineData("export --run RUN --format peft --out RUN --overwrite", "is the run")]
    [InlineData("export --run RUN --format merged --out DIR --overwrite", "contains the run")]
    [InlineData("export --run RUN --format diffusers --out OUT/mine --overwrite", "is not an earlier export")]
    [InlineData("export --run RUN --format kohya --out OUT/existing-dir", "a kohya LoRA is one .safetensors file")]
    [InlineData("export --run RUN --format kohya --out OUT/existing.safetensors --overwrite", "is not an earlier export")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/m.safetensors --rank 4", "only the LoRA formats")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/existing.safetensors", "already exists; pass --overwrite")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/existing.safetensors --overwrite", "is not an earlier export")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/model", "a merged single-file checkpoint is one .safetensors file")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/v3.safetensors", "concept embedding file v3.safetensors")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/faces-v1.safetensors --embedding-prefix faces-", "concept embedding file faces-v1.safetensors")]
    [InlineData("export --run RUN --format kohya --out OUT/x.safetensors --embedding-prefix a/b", "--embedding-prefix 'a/b': expected 1 to 64 letters, digits")]
    [InlineData("export --run RUN --format merged-single-file --out OUT/x.safetensors --embedding-prefix faces.", "--embedding-prefix 'faces.'")]
    [InlineData("export --run RUN --format peft --out OUT/p --embedding-prefix faces-", "--embedding-prefix: --format peft keys each embedding by its token")]
    public void Bad_input_is_one_line_on_stderr_with_exit_code_2_and_nothing_is_written(string commandLine, string expected)
    {
        WriteRun();
        var outDir = Path.Combine(_dir, "out");
        Directory.CreateDirectory(Path.Combine(outDir, "existing-dir"));
        Directory.CreateDirectory(Path.Combine(outDir, "mine"));
        File.WriteAllText(Path.Combine(outDir, "mine", "notes.txt"), "mine");
        File.WriteAllText(Path.Combine(outDir, "existing.safetensors"), "mine");
        var before = Directory.EnumerateFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Order().ToList();

        var args = commandLine.Split(' ').Select(a => a == "DIR" ? _dir : a.Replace("RUN", RunDir).Replace("OUT", outDir)).ToArray();
        var r = CliRunner.Run(args);

        Assert.Equal(2, r.ExitCode);
        var errorLines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("cdiff:")).ToList();
        Assert.Single(errorLines);
        Assert.Contains(expected, errorLines[0]);
        Assert.Equal(before, Directory.EnumerateFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Order().ToList());
        Assert.Equal("mine", File.ReadAllText(Path.Combine(outDir, "existing.safetensors")));
    }
}
