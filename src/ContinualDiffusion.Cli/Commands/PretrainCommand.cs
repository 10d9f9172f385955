using System.CommandLine;
using System.Globalization;
using ContinualDiffusion.Pretraining;
using Serilog;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff pretrain --out ./fashion-base`: train a small base text-to-image model from scratch (all ten Fashion-MNIST
/// classes under coarse captions by default — the model that ships in models/fashion-base — or any folder of
/// captioned images), cached in --out.
internal static class PretrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, Func<CancellationToken> cancel)
    {
        var defaults = new PretrainRequest { OutDir = "" };
        var outDir = new Option<DirectoryInfo>("--out") { Description = "Folder to write the diffusers-format model to (reused when it already holds this request's model).", Required = true };
        var fashion = new Option<DirectoryInfo?>("--fashion-mnist") { Description = $"Fashion-MNIST folder (default {Data.FashionMnist.DefaultFolder}, from the {Data.FashionMnist.DebianPackage} package)." };
        var classes = new Option<string>("--classes") { Description = "Fashion-MNIST labels to train on, comma-separated (0 t-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot).", DefaultValueFactory = _ => string.Join(",", PretrainRequest.DefaultClasses) };
        var captions = new Option<string>("--captions") { Description = "Fashion-MNIST captions: coarse (\"a photo of a top\" for t-shirt, pullover, coat and shirt; \"shoe\" for sandal, sneaker and ankle boot; trouser, dress, bag) or class (\"a photo of a coat\").", DefaultValueFactory = _ => "coarse" };
        captions.AcceptOnlyFromAmong("coarse", "class");
        var images = new Option<DirectoryInfo?>("--images") { Description = "Train on this folder instead: images plus metadata.jsonl lines {\"file_name\": ..., \"text\": ...}." };
        var maxImages = new Option<int>("--max-images") { Description = "Use at most this many images (Fashion-MNIST: split evenly over the classes).", DefaultValueFactory = _ => defaults.MaxImages };
        var arch = new Option<string>("--arch") { Description = "Architecture: a bundled name (fashion, tiny) or a JSON file with unet/vae/text_encoder/scheduler sections.", DefaultValueFactory = _ => defaults.Architecture };
        var resolution = new Option<int>("--resolution") { Description = "Image side in pixels.", DefaultValueFactory = _ => defaults.Resolution };
        var vaeSteps = new Option<int>("--vae-steps") { Description = "VAE training steps.", DefaultValueFactory = _ => defaults.VaeSteps };
        var unetSteps = new Option<int>("--unet-steps") { Description = "UNet training steps.", DefaultValueFactory = _ => defaults.UnetSteps };
        var batch = new Option<int>("--batch-size") { Description = "Images per UNet step.", DefaultValueFactory = _ => defaults.BatchSize };
        var vaeBatch = new Option<int>("--vae-batch-size") { Description = "Images per VAE step.", DefaultValueFactory = _ => defaults.VaeBatchSize };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (warm-up, then cosine decay to a tenth).", DefaultValueFactory = _ => defaults.LearningRate };
        var seed = new Option<long>("--seed") { Description = "Random seed (initialisation, batches, noise).", DefaultValueFactory = _ => defaults.Seed };
        var force = new Option<bool>("--force") { Description = "Retrain even if --out holds a model (replacing it)." };
        var device = CommonOptions.Device();

        var cmd = new Command("pretrain", "Train a small base text-to-image model from scratch (Stable Diffusion architecture).")
        {
            outDir, fashion, classes, captions, images, maxImages, arch, resolution, vaeSteps, unetSteps, batch, vaeBatch, lr, seed, force, device,
        };
        cmd.SetAction(parse =>
        {
            CommonOptions.CpuOnly(parse, device, "pretrain");
            var request = new PretrainRequest
            {
                OutDir = parse.GetValue(outDir)!.FullName,
                FashionMnistDir = parse.GetValue(fashion)?.FullName ?? Data.FashionMnist.DefaultFolder,
                Classes = ParseClasses(parse.GetValue(classes)!),
                Captions = parse.GetValue(captions) == "class" ? FashionCaptions.Class : FashionCaptions.Coarse,
                ImagesDir = parse.GetValue(images)?.FullName,
                MaxImages = parse.GetValue(maxImages),
                Architecture = parse.GetValue(arch)!,
                Resolution = parse.GetValue(resolution),
                VaeSteps = parse.GetValue(vaeSteps),
                UnetSteps = parse.GetValue(unetSteps),
                BatchSize = parse.GetValue(batch),
                VaeBatchSize = parse.GetValue(vaeBatch),
                LearningRate = parse.GetValue(lr),
                Seed = parse.GetValue(seed),
                Force = parse.GetValue(force),
            }.Validated();
            var progress = new StagedProgressBar(stderr);
            var result = Pretrainer.Run(request,
                step => progress.Report(step.Stage, step.Step, step.TotalSteps, step.Loss),
                message => Log.Information("{Message}", message), cancel());
            var r = result.Record;
            if (result.Reused)
                stdout.WriteLine($"reusing the pretrained model in {result.OutDir} (same request, trained {r.CreatedUtc:yyyy-MM-dd HH:mm} UTC; --force retrains)");
            else
                stdout.WriteLine($"pretrained {result.OutDir}: {r.ImageCount} images, VAE {r.VaeStepsPerSecond:F2} it/s (loss {r.VaeFinalLoss:F4}), UNet {r.UnetStepsPerSecond:F2} it/s (loss {r.UnetFinalLoss:F4}), {r.TotalSeconds:F0} s");
            stdout.WriteLine($"try: cdiff sample --model {result.OutDir} --prompt \"a photo of a top\"");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static int[] ParseClasses(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var c) ? c
                : throw new InputException($"--classes: '{s}' is not a Fashion-MNIST label (0-9)"))
            .ToArray();
}
