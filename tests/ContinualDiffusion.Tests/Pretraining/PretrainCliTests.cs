using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using ContinualDiffusion.Pretraining;
using ContinualDiffusion.Sampling;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Pretraining;

public class PretrainCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-pretrain-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// Four captioned images in Hugging Face imagefolder layout.
    private string CaptionedFolder()
    {
        var dir = TestImages.WriteFolder(Path.Combine(_dir, "data"), 4, new Rgb24(30, 30, 30));
        File.WriteAllLines(Path.Combine(dir, CaptionedImages.MetadataFileName),
        [
            """{"file_name": "img0.png", "text": "a photo of a square"}""",
            """{"file_name": "img1.png", "text": "a photo of a square"}""",
            "",
            """{"file_name": "img2.png", "text": "a photo of a box"}""",
            """{"file_name": "img3.png", "text": "a photo of a box"}""",
        ]);
        return dir;
    }

    private static string[] Tiny(string images, string outDir, int unetSteps = 2) =>
        ["pretrain", "--images", images, "--out", outDir, "--vae-steps", "2", "--unet-steps", $"{unetSteps}", "--batch-size", "2", "--vae-batch-size", "2", "--seed", "3"];

    [Fact]
    public void A_short_pretrain_writes_a_model_that_samples_trains_a_concept_and_is_reused()
    {
        var images = CaptionedFolder();
        var model = Path.Combine(_dir, "base");

        var first = CliRunner.Run(Tiny(images, model));
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Contains("pretrained", first.Stdout);
        Assert.False(Directory.EnumerateDirectories(_dir, ".base.*").Any(), "no temporary folder is left behind");

        using (var sd = StableDiffusion.Load(DiffusersFolder.Open(model)))
        {
            using var image = new TextToImagePipeline(sd).Generate(new SampleRequest { Prompt = "a photo of a box", Steps = 2, Seed = 1, NumImages = 1 });
            Assert.Equal(new long[] { 1, 32, 32, 3 }, image.shape);
            Assert.True(image.isfinite().all().item<bool>());
        }

        var concept = TestImages.WriteFolder(Path.Combine(_dir, "concept"), 2, new Rgb24(200, 40, 40));
        var train = CliRunner.Run("train", "--task", "1", "--images", concept, "--model", model, "--run", Path.Combine(_dir, "run"),
            "--steps", "2", "--rank", "2", "--checkpoint-every", "0");
        Assert.True(train.ExitCode == 0, train.Stderr);

        var record = PretrainRecord.TryRead(model)!;
        var again = CliRunner.Run(Tiny(images, model));
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("reusing", again.Stdout);
        Assert.Equal(record.CreatedUtc, PretrainRecord.TryRead(model)!.CreatedUtc); // not retrained

        var changed = CliRunner.Run(Tiny(images, model, unetSteps: 3));
        Assert.Equal(2, changed.ExitCode);
        Assert.Contains("--force", changed.Stderr);

        var forced = CliRunner.Run([.. Tiny(images, model, unetSteps: 3), "--force"]);
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.NotEqual(record.Fingerprint, PretrainRecord.TryRead(model)!.Fingerprint);
        Assert.Equal(3, PretrainRecord.TryRead(model)!.Request["unet_steps"]!.GetValue<int>());
    }

    [Fact]
    public void A_folder_not_written_by_pretrain_is_not_overwritten_without_force()
    {
        var outDir = Directory.CreateDirectory(Path.Combine(_dir, "mine")).FullName;
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "x");
        var r = CliRunner.Run(Tiny(CaptionedFolder(), outDir));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--force", r.Stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "keep.txt")));
    }

    [Theory]
    [InlineData("--unet-steps 0", "--unet-steps must be positive")]
    [InlineData("--vae-steps -1", "--vae-steps must be positive")]
    [InlineData("--batch-size 0", "--batch-size must be positive")]
    [InlineData("--vae-batch-size 0", "--vae-batch-size must be positive")]
    [InlineData("--classes 0,12", "unknown Fashion-MNIST class 12")]
    [InlineData("--classes 0,shoe", "'shoe' is not a Fashion-MNIST label")]
    [InlineData("--resolution 30", "multiple of 8")]
    [InlineData("--arch no-such-arch", "no-such-arch")]
    public void Bad_options_exit_with_2_and_say_why(string options, string expected)
    {
        var r = CliRunner.Run(["pretrain", "--out", Path.Combine(_dir, "o"), .. options.Split(' ')]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "o")));
    }
}
