using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Interop.Export;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Interop.Export;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Runs;

/// The manifest's per-task `training` recipe: written by `cdiff train` with the effective values, shown by `status`,
/// validated on read, and carried into a single-task kohya export as kohya's `ss_*` keys.
public class TaskRecipeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-recipe-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Train_records_the_effective_recipe_and_status_and_kohya_export_show_it()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 3, new Rgb24(200, 40, 40));
        File.WriteAllText(Path.Combine(images, "img0.txt"), "a photo of {} on a beach");
        var t = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "3", "--rank", "2",
            "--checkpoint-every", "0", "--batch-size", "2", "--gradient-accumulation-steps", "2", "--lr-scheduler", "cosine", "--lr-warmup-steps", "1",
            "--snr-gamma", "5", "--noise-offset", "0.05", "--token-lr", "0.01", "--lr", "0.0002", "--seed", "7");
        Assert.True(t.ExitCode == 0, t.Stderr);

        var training = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json"))).RootElement.GetProperty("tasks")[0].GetProperty("training");
        Assert.Equal(0.01, training.GetProperty("token_learning_rate").GetDouble());
        Assert.Equal(2, training.GetProperty("batch_size").GetInt32());
        Assert.Equal(2, training.GetProperty("gradient_accumulation_steps").GetInt32());
        Assert.Equal("cosine", training.GetProperty("lr_scheduler").GetString());
        Assert.Equal(1, training.GetProperty("lr_warmup_steps").GetInt32());
        Assert.Equal(32, training.GetProperty("resolution").GetInt32()); // sd-tiny's native size, resolved
        Assert.Equal(5, training.GetProperty("snr_gamma").GetDouble());
        Assert.Equal(0.05, training.GetProperty("noise_offset").GetDouble());
        Assert.Equal(1, training.GetProperty("captioned_images").GetInt32());
        Assert.Equal("fp32", training.GetProperty("dtype").GetString());
        Assert.True(training.GetProperty("horizontal_flip").GetBoolean());

        var status = CliRunner.Run("status", "--run", run);
        Assert.Equal(0, status.ExitCode);
        Assert.Equal("training     task 1: 32 px, batch 2 × 2 accumulated, cosine with 1 warm-up step, token lr 0.01, Min-SNR γ 5, noise offset 0.05, " +
                     "flips, fp32, prompt \"a photo of {}\", 1 of 3 images captioned",
            Assert.Single(status.Stdout.Split('\n'), l => l.StartsWith("training", StringComparison.Ordinal)).TrimEnd());

        var kohya = Path.Combine(_dir, "out", "one.safetensors");
        var k = CliRunner.Run("export", "--run", run, "--format", "kohya", "--out", kohya);
        Assert.True(k.ExitCode == 0, k.Stderr);
        using var file = SafeTensorsFile.Open(kohya);
        var m = file.Metadata;
        Assert.Equal("0.0002", m["ss_learning_rate"]);
        Assert.Equal("3", m["ss_max_train_steps"]);
        Assert.Equal("3", m["ss_num_train_images"]);
        Assert.Equal("cosine", m["ss_lr_scheduler"]);
        Assert.Equal("1", m["ss_lr_warmup_steps"]);
        Assert.Equal("2", m["ss_gradient_accumulation_steps"]);
        Assert.Equal("4", m["ss_total_batch_size"]);
        Assert.Equal("5.0", m["ss_min_snr_gamma"]);
        Assert.Equal("0.05", m["ss_noise_offset"]);
        Assert.Equal("7", m["ss_seed"]);
        Assert.Equal("(32, 32)", m["ss_resolution"]);
        Assert.Equal("no", m["ss_mixed_precision"]);
        Assert.Equal("True", m["ss_flip_aug"]);
        Assert.Equal("False", m["ss_enable_bucket"]);
        Assert.DoesNotContain("bucket_step", File.ReadAllText(Path.Combine(run, "manifest.json")));
    }

    /// `--aspect-buckets`: images of three shapes train in their buckets; the run says so, and so does a kohya export.
    [Fact]
    public void Train_with_aspect_buckets_announces_and_records_them()
    {
        var run = Path.Combine(_dir, "run");
        var images = Directory.CreateDirectory(Path.Combine(_dir, "imgs")).FullName;
        foreach (var (name, w, h) in new[] { ("a", 80, 40), ("b", 40, 80), ("c", 90, 50) })
            using (var image = new SixLabors.ImageSharp.Image<Rgb24>(w, h, new Rgb24(200, 40, 40)))
                SixLabors.ImageSharp.ImageExtensions.SaveAsPng(image, Path.Combine(images, name + ".png"));
        var t = CliRunner.RunProcess("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "2", "--rank", "2",
            "--checkpoint-every", "0", "--batch-size", "2", "--aspect-buckets", "--bucket-step", "8");
        Assert.True(t.ExitCode == 0, t.Stderr);
        Assert.Contains("task 1: 3 image(s) in 2 aspect buckets: 24x40 (1), 40x24 (2)", t.Stderr);
        var training = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json"))).RootElement.GetProperty("tasks")[0].GetProperty("training");
        Assert.Equal(8, training.GetProperty("bucket_step").GetInt32());
        Assert.Contains("aspect buckets (step 8)", CliRunner.Run("status", "--run", run).Stdout);

        var kohya = Path.Combine(_dir, "out", "one.safetensors");
        Assert.Equal(0, CliRunner.Run("export", "--run", run, "--format", "kohya", "--out", kohya).ExitCode);
        using var file = SafeTensorsFile.Open(kohya);
        Assert.Equal("True", file.Metadata["ss_enable_bucket"]);
        Assert.Equal("16", file.Metadata["ss_min_bucket_reso"]);
        Assert.Equal("64", file.Metadata["ss_max_bucket_reso"]);
    }

    /// A task without the recipe (manifests written before it) shows no line and exports no training keys; several
    /// tasks export none either (their sum was not one training).
    [Fact]
    public void Older_manifests_and_multi_task_exports_carry_no_training_keys()
    {
        var run = SyntheticRun.Create(Path.Combine(_dir, "run"), 2, 2);
        var before = CliRunner.Run("status", "--run", run.Root);
        Assert.Equal(0, before.ExitCode);
        Assert.DoesNotContain("training ", before.Stdout);
        var m = run.ReadManifest();
        run.WriteManifest(m with { Tasks = [.. m.Tasks.Select(e => e with { Training = Recipe })] });
        Assert.Equal(2, CliRunner.Run("status", "--run", run.Root).Stdout.Split('\n').Count(l => l.StartsWith("training     task", StringComparison.Ordinal)));

        var both = Path.Combine(_dir, "out", "both.safetensors");
        Assert.Equal(0, CliRunner.Run("export", "--run", run.Root, "--format", "kohya", "--out", both).ExitCode);
        using (var f = SafeTensorsFile.Open(both)) Assert.DoesNotContain(f.Metadata.Keys, k => k == "ss_learning_rate" || k == "ss_seed");
        var first = Path.Combine(_dir, "out1", "first.safetensors"); // its own folder: the embedding files beside it are new
        Assert.Equal(0, CliRunner.Run("export", "--run", run.Root, "--format", "kohya", "--out", first, "--tasks", "1").ExitCode);
        using (var f = SafeTensorsFile.Open(first))
        {
            Assert.Equal("0.001", f.Metadata["ss_learning_rate"]);
            Assert.Equal("1", f.Metadata["ss_seed"]);
            Assert.Equal("None", f.Metadata["ss_min_snr_gamma"]);
            Assert.Equal("None", f.Metadata["ss_noise_offset"]);
            Assert.Equal("bf16", f.Metadata["ss_mixed_precision"]);
        }
    }

    [Theory]
    [InlineData("\"batch_size\": 2", "\"batch_size\": 0", "training.batch_size must be > 0")]
    [InlineData("\"captioned_images\": 0", "\"captioned_images\": 4", "training.captioned_images must be from 0 to image_count (3)")]
    [InlineData("\"lr_scheduler\": \"linear\"", "\"lr_scheduler\": \"step\"", "training.lr_scheduler must be one of constant")]
    [InlineData("\"dtype\": \"bf16\"", "\"dtype\": \"int8\"", "training.dtype must be one of fp32")]
    [InlineData("\"resolution\": 64", "\"resolution\": 63", "training.resolution must be a multiple of 8")]
    [InlineData("\"resolution\": 64", "\"resolution\": 1000000000", "training.resolution must be a multiple of 8 up to 65536")]
    [InlineData("\"resolution\": 64", "\"resolution\": 64, \"bucket_step\": 12", "training.bucket_step must be a multiple of 8 that divides the resolution (64)")]
    [InlineData("\"resolution\": 64", "\"resolution\": 64, \"bucket_step\": 48", "training.bucket_step must be a multiple of 8 that divides the resolution (64)")]
    public void A_bad_recipe_in_the_manifest_is_refused_naming_the_key(string good, string bad, string expected)
    {
        var run = SyntheticRun.Create(Path.Combine(_dir, "run"), 2);
        var m = run.ReadManifest();
        run.WriteManifest(m with { Tasks = [m.Tasks[0] with { Training = Recipe }] });
        var text = File.ReadAllText(run.ManifestPath);
        Assert.Contains(good, text);
        File.WriteAllText(run.ManifestPath, text.Replace(good, bad, StringComparison.Ordinal));
        var status = CliRunner.Run("status", "--run", run.Root);
        Assert.Equal(2, status.ExitCode);
        Assert.Contains($"task 1: {expected}", status.Stderr);
    }

    /// A malformed recipe that the JSON reader itself rejects (missing keys, a null) is named by its path in the manifest.
    [Theory]
    [InlineData("{}", "tasks[0].training")]
    [InlineData("null-batch", "tasks[0].training.batch_size")]
    public void A_recipe_the_json_reader_rejects_is_named_by_its_path(string kind, string expected)
    {
        var run = SyntheticRun.Create(Path.Combine(_dir, "run"), 2);
        var m = run.ReadManifest();
        run.WriteManifest(m with { Tasks = [m.Tasks[0] with { Training = Recipe }] });
        var text = File.ReadAllText(run.ManifestPath);
        var node = System.Text.Json.Nodes.JsonNode.Parse(text)!;
        if (kind == "{}") node["tasks"]![0]!["training"] = new System.Text.Json.Nodes.JsonObject();
        else node["tasks"]![0]!["training"]!["batch_size"] = null;
        File.WriteAllText(run.ManifestPath, node.ToJsonString());
        var status = CliRunner.Run("status", "--run", run.Root);
        Assert.Equal(2, status.ExitCode);
        Assert.Contains($"not a valid cdiff manifest ({expected}", status.Stderr);
    }

    /// `--aspect-buckets false` turns off a config file's buckets; a --bucket-step without buckets changes nothing.
    [Fact]
    public void The_command_line_turns_a_configs_buckets_off_and_a_lone_bucket_step_is_ignored()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(200, 40, 40));
        var config = Path.Combine(_dir, "train.json");
        File.WriteAllText(config, "{ \"aspect_buckets\": true, \"bucket_step\": 8 }");
        string[] args = ["train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "1", "--rank", "2", "--checkpoint-every", "0", "--config", config];
        Assert.Equal(0, CliRunner.Run([.. args, "--aspect-buckets", "false"]).ExitCode);
        var task = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json"))).RootElement.GetProperty("tasks")[0];
        Assert.False(task.GetProperty("training").TryGetProperty("bucket_step", out _));
        Assert.Equal(0, CliRunner.Run([.. args, "--overwrite"]).ExitCode);
        task = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json"))).RootElement.GetProperty("tasks")[0];
        Assert.Equal(8, task.GetProperty("training").GetProperty("bucket_step").GetInt32());
    }

    private static TaskRecipe Recipe => new()
    {
        TokenLearningRate = 5e-3, BatchSize = 2, GradientAccumulationSteps = 1, LrScheduler = "linear", LrWarmupSteps = 0, Resolution = 64,
        NoiseOffset = 0, MaxGradNorm = 1, HorizontalFlip = true, PromptTemplates = ["a photo of {}"], CaptionedImages = 0,
        Dtype = "bf16", VaeFp32 = false, GradientCheckpointing = false,
    };
}

