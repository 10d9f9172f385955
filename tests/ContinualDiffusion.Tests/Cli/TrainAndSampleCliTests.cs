using ContinualDiffusion.Imaging;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Cli;

public class TrainAndSampleCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cli-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Train_two_concepts_then_sample_each_and_check_status()
    {
        var run = Path.Combine(_dir, "cdiff-run"); // the default run directory, so `sample` below can omit --run
        var p1 = TestImages.WriteFolder(Path.Combine(_dir, "p1"), 3, new Rgb24(200, 40, 40));
        var p2 = TestImages.WriteFolder(Path.Combine(_dir, "p2"), 3, new Rgb24(40, 40, 200));
        string[] common = ["--run", run, "--steps", "3", "--rank", "2", "--checkpoint-every", "0"];

        var t1 = CliRunner.Run(["train", "--task", "1", "--images", p1, "--model", Fixture.SdTiny, .. common]);
        Assert.True(t1.ExitCode == 0, t1.Stderr);
        Assert.Contains("learned <v1>", t1.Stdout);
        var t2 = CliRunner.Run(["train", "--task", "2", "--images", p2, .. common]);
        Assert.True(t2.ExitCode == 0, t2.Stderr);

        foreach (var token in new[] { "<v1>", "<v2>" })
        {
            var outDir = Path.Combine(_dir, "out" + token.Trim('<', '>'));
            var s = CliRunner.Run("sample", "--run", run, "--prompt", $"a photo of {token}", "--steps", "3", "--seed", "5", "--out", outDir);
            Assert.True(s.ExitCode == 0, s.Stderr);
            var png = s.Stdout.Trim().Split('\n').Single();
            var (image, text) = PngFile.Load(png);
            Assert.Equal(new long[] { 32, 32, 3 }, image.shape);
            Assert.Equal($"a photo of {token}", text["prompt"]);
            Assert.Equal("5", text["seed"]);
            Assert.Equal("ddim", text["scheduler"]);
        }

        // As users type it: `cdiff sample --prompt "<v2> ..."` in the folder they trained in uses ./cdiff-run.
        var byDefault = CliRunner.RunProcessIn(_dir, new Dictionary<string, string>(), "sample", "--prompt", "a photo of <v2>", "--steps", "2", "--seed", "5", "--out", Path.Combine(_dir, "default"));
        Assert.True(byDefault.ExitCode == 0, byDefault.Stderr);
        Assert.Single(Directory.GetFiles(Path.Combine(_dir, "default"), "*.png"));

        var status = CliRunner.Run("status", "--run", run);
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("<v2>", status.Stdout);
        Assert.Contains("integrity    ok", status.Stdout);

        // Tampering is found.
        var adapter = Directory.GetFiles(Path.Combine(run, "adapters")).First();
        var bytes = File.ReadAllBytes(adapter);
        bytes[^1] ^= 0xff;
        File.WriteAllBytes(adapter, bytes);
        var bad = CliRunner.Run("status", "--run", run);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("FAILED", bad.Stdout);
    }

    /// `--sample-every N --sample-prompt P`: a validation image every N steps, drawn from P with the new token for {}.
    [Fact]
    public void Validation_samples_are_written_every_N_steps_with_the_given_prompt()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(200, 40, 40));
        var t = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "4", "--rank", "2",
            "--checkpoint-every", "0", "--sample-every", "2", "--sample-prompt", "a {} in the snow");
        Assert.True(t.ExitCode == 0, t.Stderr);
        var samples = Path.Combine(run, "samples", "task-001");
        Assert.Equal(["step-00002.png", "step-00004.png"], Directory.GetFiles(samples).Select(f => Path.GetFileName(f)).Order().ToArray());
        var (image, text) = PngFile.Load(Path.Combine(samples, "step-00004.png"));
        image.Dispose();
        Assert.Equal("a <v1> in the snow", text["prompt"]);
        Assert.Equal("4", text["step"]);
    }

    /// `--prompt-file`: every line drawn with one model load and the seed, each PNG carrying its prompt; a bad line is
    /// refused, naming it, before any image is drawn.
    [Fact]
    public void Sample_draws_every_prompt_of_a_prompt_file_and_checks_them_all_first()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(200, 40, 40));
        Assert.Equal(0, CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "1", "--rank", "2", "--checkpoint-every", "0").ExitCode);
        var file = Path.Combine(_dir, "prompts.txt");
        File.WriteAllText(file, "# concepts\n\na photo of <v1>\r\n  a drawing of <v1> at night  \n");
        var outDir = Path.Combine(_dir, "out");
        var s = CliRunner.Run("sample", "--run", run, "--prompt-file", file, "--steps", "2", "--seed", "5", "--out", outDir);
        Assert.True(s.ExitCode == 0, s.Stderr);
        var pngs = s.Stdout.Trim().Split('\n');
        Assert.Equal([Path.Combine(outDir, "5-p001-00.png"), Path.Combine(outDir, "5-p002-00.png")], pngs);
        Assert.Equal(["a photo of <v1>", "a drawing of <v1> at night"], pngs.Select(p =>
        {
            var (image, text) = PngFile.Load(p);
            image.Dispose();
            return text["prompt"];
        }));

        File.WriteAllText(file, "a photo of <v1>\na photo of <v2>\n");
        var bad = CliRunner.Run("sample", "--run", run, "--prompt-file", file, "--steps", "2", "--out", Path.Combine(_dir, "out2"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains($"--prompt-file {file}: prompt 2 (\"a photo of <v2>\"): prompt uses unknown concept token(s) <v2>", bad.Stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out2")) && Directory.EnumerateFiles(Path.Combine(_dir, "out2")).Any());

        File.WriteAllText(file, "# nothing here\n\n");
        var empty = CliRunner.Run("sample", "--run", run, "--prompt-file", file);
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains($"--prompt-file {file}: no prompt in it", empty.Stderr);
    }

    /// Captions beside the images are used and announced; a bad one stops the task before anything is written.
    [Fact]
    public void Train_reads_captions_and_refuses_a_bad_one_naming_it()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(200, 40, 40));
        string[] args = ["train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "2", "--rank", "2", "--checkpoint-every", "0"];
        Assert.Equal(0, CliRunner.Run(args).ExitCode);
        double FinalLoss() => System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json")))
            .RootElement.GetProperty("tasks")[0].GetProperty("final_loss").GetDouble();
        double uncaptioned = FinalLoss();

        File.WriteAllText(Path.Combine(images, "img0.txt"), "a photo of {} on a beach");
        File.WriteAllText(Path.Combine(images, "img1.txt"), "a drawing of {} at night");
        var t = CliRunner.RunProcess([.. args, "--overwrite"]); // a process of its own: the log lines go to the real stderr
        Assert.True(t.ExitCode == 0, t.Stderr);
        Assert.Contains("task 1: 2 of 2 image(s) have a caption (.txt)", t.Stderr);
        Assert.NotEqual(uncaptioned, FinalLoss()); // the same draws, other text: the captions reached the steps

        File.WriteAllText(Path.Combine(images, "img0.txt"), string.Join(' ', Enumerable.Repeat("very", 80)) + " {}");
        var manifestBefore = File.ReadAllBytes(Path.Combine(run, "manifest.json"));
        var late = CliRunner.Run([.. args, "--overwrite"]);
        Assert.Equal(2, late.ExitCode);
        Assert.Contains($"{Path.Combine(images, "img0.txt")}: the caption's {{}} comes after the text encoder's 77 tokens", late.Stderr);
        Assert.Equal(manifestBefore, File.ReadAllBytes(Path.Combine(run, "manifest.json")));

        File.WriteAllText(Path.Combine(images, "img0.txt"), "a photo of {} on a beach");
        File.WriteAllText(Path.Combine(images, "img1.txt"), "a photo of a dog");
        var manifest = File.ReadAllBytes(Path.Combine(run, "manifest.json"));
        var bad = CliRunner.Run([.. args, "--overwrite"]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains($"{Path.Combine(images, "img1.txt")}: a caption must contain {{}}", bad.Stderr);
        Assert.Equal(manifest, File.ReadAllBytes(Path.Combine(run, "manifest.json")));
    }

    [Theory]
    [InlineData("train --task 1 --images /no/such/dir --model MODEL --run RUN", "folder not found")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --rank 0", "--rank must be > 0")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --lambda -1", "--lambda must be >= 0")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --steps 0", "--steps must be > 0")]
    [InlineData("train --task 2 --images IMAGES --model MODEL --run RUN", "start with --task 1")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --lr-warmup-steps 5", "--lr-warmup-steps must be 0 with the constant schedule (set --lr-scheduler to")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --lr-scheduler step", "Argument 'step' not recognized")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --gradient-accumulation-steps 0", "--gradient-accumulation-steps must be > 0")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --sample-every -1", "--sample-every -1: must be >= 0")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --snr-gamma 0", "--snr-gamma must be a positive number")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --noise-offset -0.1", "--noise-offset must be a number >= 0")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --bucket-step 12", "--bucket-step must be a multiple of 8")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --aspect-buckets --bucket-step 24", "--bucket-step 24: the training resolution (32 px) must be a multiple of it (pass --bucket-step 16 or a --resolution that is a multiple of 24)")]
    [InlineData("train --task 1 --images IMAGES --model MODEL --run RUN --aspect-buckets", "the default bucket step 64: the training resolution (32 px) must be a multiple of it (pass --bucket-step 16 or")]
    [InlineData("train --task 1 --images IMAGES --run RUN", "--model is required")]
    [InlineData("sample --model MODEL --prompt x --scheduler heun", "heun")]
    [InlineData("sample --model MODEL --prompt x --width 33", "multiples of 8")]
    [InlineData("sample --model /no/such/model --prompt x", "model folder not found")]
    [InlineData("sample --model MODEL --prompt <v4>", "unknown concept token")]
    [InlineData("sample --prompt x", "no --run or --model given")]
    [InlineData("sample --model MODEL", "--prompt TEXT (or --prompt-file FILE) is required")]
    [InlineData("sample --model MODEL --prompt x --prompt-file /no/such/prompts.txt", "--prompt and --prompt-file: give one of them")]
    [InlineData("sample --model MODEL --prompt-file /no/such/prompts.txt", "--prompt-file /no/such/prompts.txt: cannot read it")]
    [InlineData("status --run RUN", "not a cdiff run directory")]
    public void Bad_input_is_one_line_on_stderr_with_exit_code_2(string commandLine, string expected)
    {
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(10, 200, 10));
        var args = commandLine.Split(' ').Select(a => a switch
        {
            "MODEL" => Fixture.SdTiny,
            "IMAGES" => images,
            "RUN" => Path.Combine(_dir, "run"),
            _ => a,
        }).ToArray();
        var r = CliRunner.Run(args);
        Assert.Equal(2, r.ExitCode);
        var errorLines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("cdiff:")).ToList();
        Assert.Single(errorLines);
        Assert.Contains(expected, errorLines[0]);
        Assert.False(File.Exists(Path.Combine(_dir, "run", "manifest.json")));
    }
}
