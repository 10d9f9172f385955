using ContinualDiffusion.Imaging;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Interop;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Cli;

/// `--model` takes an original-LDM single file (tests/fixtures/sd1-single-file) as well as a diffusers folder, with
/// `--original-config` and `--prediction-type`; a run bound to a single file remembers them and its hash.
public class SingleFileCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cli-single-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// The fixture's native size: its yaml's latent image_size 16 × the VAE's factor 8 (four levels).
    private const int NativeSide = 128;

    private string Images(string name, Rgb24 colour) => TestImages.WriteFolder(Path.Combine(_dir, name), 2, colour);

    private static string[] Short(string run) => ["--run", run, "--steps", "2", "--rank", "2", "--checkpoint-every", "0"];

    private static string SinglePng(CliResult r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        var png = r.Stdout.Trim().Split('\n').Single();
        Assert.True(File.Exists(png), png);
        return png;
    }

    private static void AssertOneLineError(CliResult r, string expected)
    {
        Assert.Equal(2, r.ExitCode);
        var errorLines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("cdiff:")).ToList();
        Assert.Single(errorLines);
        Assert.Contains(expected, errorLines[0]);
    }

    [Fact]
    public void Sample_with_a_single_file_and_its_original_config_writes_a_png_at_the_native_size()
    {
        var outDir = Path.Combine(_dir, "out");
        var r = CliRunner.Run("sample", "--model", Sd1SingleFile.Model, "--original-config", Sd1SingleFile.OriginalConfig,
            "--prompt", "a watercolor of a red fox", "--steps", "2", "--seed", "3", "--out", outDir);
        var png = SinglePng(r);
        Assert.Equal(outDir, Path.GetDirectoryName(png));
        var (image, text) = PngFile.Load(png);
        using (image)
            Assert.Equal(new long[] { NativeSide, NativeSide, 3 }, image.shape);
        Assert.Equal(Sd1SingleFile.Model, text["model"]);
        Assert.Equal("3", text["seed"]);
        Assert.Equal("ddim", text["scheduler"]); // LDM's DDIM schedule, as diffusers loads a single file
    }

    [Fact]
    public void A_run_trained_on_a_single_file_samples_trains_and_checks_status_without_repeating_its_options()
    {
        var run = Path.Combine(_dir, "run");
        var t1 = CliRunner.Run(["train", "--task", "1", "--images", Images("p1", new Rgb24(200, 40, 40)), "--model", Sd1SingleFile.Model,
            "--original-config", Sd1SingleFile.OriginalConfig, "--prediction-type", "epsilon", .. Short(run)]);
        Assert.True(t1.ExitCode == 0, t1.Stderr);
        Assert.Contains("learned <v1>", t1.Stdout);

        var manifest = new RunDirectory(run).ReadManifest();
        Assert.Equal(Sd1SingleFile.Model, manifest.BaseModel.Path);
        var single = Assert.IsType<SingleFileInfo>(manifest.BaseModel.SingleFile);
        Assert.Equal(Sd1SingleFile.OriginalConfig, single.OriginalConfig);
        Assert.Equal(RunDirectory.Sha256File(Sd1SingleFile.OriginalConfig), single.OriginalConfigSha256);
        Assert.Equal("epsilon", single.PredictionType);

        // No --model, --original-config or --prediction-type: the run reopens the file as task 1 did.
        var s = CliRunner.Run("sample", "--run", run, "--prompt", "a photo of <v1>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "out1"));
        var (image, text) = PngFile.Load(SinglePng(s));
        using (image)
            Assert.Equal(new long[] { NativeSide, NativeSide, 3 }, image.shape); // the yaml's size: it was reapplied
        Assert.Equal("a photo of <v1>", text["prompt"]);

        var t2 = CliRunner.Run(["train", "--task", "2", "--images", Images("p2", new Rgb24(40, 40, 200)), .. Short(run)]);
        Assert.True(t2.ExitCode == 0, t2.Stderr);
        Assert.Contains("learned <v2>", t2.Stdout);
        var after = new RunDirectory(run).ReadManifest();
        Assert.Equal(manifest.BaseModel, after.BaseModel);
        Assert.Equal([1, 2], after.Tasks.Select(t => t.Task));

        var both = CliRunner.Run("sample", "--run", run, "--prompt", "<v1> next to <v2>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "out2"));
        SinglePng(both);

        var status = CliRunner.Run("status", "--run", run);
        Assert.True(status.ExitCode == 0, status.Stdout + status.Stderr);
        Assert.Contains("integrity    ok", status.Stdout);
        Assert.Contains($"original config {Sd1SingleFile.OriginalConfig}", status.Stdout);
    }

    [Fact]
    public void A_run_bound_to_a_single_file_refuses_the_file_or_its_yaml_once_changed()
    {
        var (model, yaml) = Sd1SingleFile.CopyTo(Path.Combine(_dir, "model"));
        var run = Path.Combine(_dir, "run");
        var t1 = CliRunner.Run(["train", "--task", "1", "--images", Images("p1", new Rgb24(200, 40, 40)), "--model", model, "--original-config", yaml, .. Short(run)]);
        Assert.True(t1.ExitCode == 0, t1.Stderr);
        var outDir = Path.Combine(_dir, "out");
        string[] sample = ["sample", "--run", run, "--prompt", "a photo of <v1>", "--steps", "2", "--out", outDir];
        string[] train2 = ["train", "--task", "2", "--images", Images("p2", new Rgb24(40, 40, 200)), .. Short(run)];

        // The yaml decides the model as much as the weights do: a changed yaml is refused by its recorded SHA-256.
        var original = File.ReadAllBytes(yaml);
        File.AppendAllText(yaml, "# edited after training\n");
        AssertOneLineError(CliRunner.Run(sample), "changed since the run was trained");
        File.WriteAllBytes(yaml, original);

        Sd1SingleFile.FlipAByteOfTheLastTensor(model);
        AssertOneLineError(CliRunner.Run(sample), "not the base model the run was trained on");
        AssertOneLineError(CliRunner.Run(train2), "not the base model the run was trained on");
        var status = CliRunner.Run("status", "--run", run);
        Assert.Equal(2, status.ExitCode);
        Assert.Contains("FAILED: base model", status.Stdout);
        Assert.Single(new RunDirectory(run).ReadManifest().Tasks); // nothing was trained on the changed file
        Assert.False(Directory.Exists(outDir), "no image was sampled from the changed file");
    }

    [Theory]
    [InlineData("sample --model SDTINY --original-config YAML --prompt x", "describe a single-file checkpoint")]
    [InlineData("sample --model SDTINY --prediction-type v_prediction --prompt x", "describe a single-file checkpoint")]
    [InlineData("train --task 1 --images IMAGES --model SDTINY --prediction-type epsilon --run RUN", "describe a single-file checkpoint")]
    [InlineData("sample --model SINGLE --prediction-type x_prediction --prompt x", "x_prediction")]
    [InlineData("sample --model SINGLE --original-config /no/such/config.yaml --prompt x", "/no/such/config.yaml")]
    [InlineData("sample --model /no/such/model.safetensors --prompt x", "expected a single-file .safetensors checkpoint")]
    public void Bad_single_file_input_is_one_line_on_stderr_with_exit_code_2(string commandLine, string expected)
    {
        var images = Images("imgs", new Rgb24(10, 200, 10));
        var args = commandLine.Split(' ').Select(a => a switch
        {
            "SDTINY" => Fixture.SdTiny,
            "SINGLE" => Sd1SingleFile.Model,
            "YAML" => Sd1SingleFile.OriginalConfig,
            "IMAGES" => images,
            "RUN" => Path.Combine(_dir, "run"),
            _ => a,
        }).ToArray();
        var r = CliRunner.Run(args);
        AssertOneLineError(r, expected);
        Assert.False(File.Exists(Path.Combine(_dir, "run", RunDirectory.ManifestName)));
    }
}
