using System.Diagnostics;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// What `Pretrainer.Run` did: trained a new model into `OutDir`, or found the same request already there.
public sealed record PretrainResult(string OutDir, bool Reused, PretrainRecord Record);

/// `cdiff pretrain`: trains a small Stable-Diffusion-architecture model from scratch on captioned images
/// (VAE first, then the UNet on the VAE's latents) and writes it as a diffusers folder. A finished folder is
/// reused when its fingerprint equals the request's; a different request on it needs `Force`.
public static class Pretrainer
{
    public static PretrainResult Run(PretrainRequest request, Action<PretrainStep>? afterStep = null, Action<string>? info = null,
        CancellationToken cancel = default)
    {
        request = request.Validated();
        var total = Stopwatch.StartNew();
        var arch = PretrainArchitecture.Load(request.Architecture);
        using var data = LoadData(request);
        var canonical = PretrainFingerprint.Canonical(request, arch, data.Identity);
        var fingerprint = PretrainFingerprint.Compute(canonical);

        var outDir = Path.GetFullPath(request.OutDir);
        if (!request.Force && Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
        {
            var existing = PretrainRecord.TryRead(outDir);
            if (existing?.Fingerprint == fingerprint)
                return new PretrainResult(outDir, Reused: true, existing);
            throw new InputException(existing is null
                ? $"--out {outDir}: the folder exists and is not a model written by cdiff pretrain; choose another folder or pass --force to replace it"
                : $"--out {outDir}: holds a model pretrained with different options or data (fingerprint {existing.Fingerprint[..12]}, this request {fingerprint[..12]}); pass --force to retrain it");
        }

        // oneDNN stays on (4x faster convolutions); its few-channel convolutions go through Models/OneDnnSafeConv, and
        // NonFiniteStepGuard recomputes a non-finite step without it.
        TorchSetup.Initialize();
        info?.Invoke($"{data.Count} images, {data.Captions.Distinct().Count()} distinct captions, architecture {arch}");
        using var model = Build(arch, request);

        var clock = Stopwatch.StartNew();
        double vaeLoss = VaePretrainer.Train(model.Vae, data.Pixels, request.VaeSteps, request.VaeBatchSize, request.LearningRate, request.Seed, afterStep, info, cancel);
        double vaeSeconds = clock.Elapsed.TotalSeconds;

        clock.Restart();
        using var latents = VaePretrainer.EncodeMeans(model.Vae, data.Pixels);
        double scaling = VaePretrainer.ScalingFactor(latents);
        using var scaled = latents.Times(scaling);
        double encodeSeconds = clock.Elapsed.TotalSeconds;
        info?.Invoke($"latents {string.Join("x", latents.shape)}, scaling factor {scaling:F4} ({encodeSeconds:F1} s)");

        clock.Restart();
        double unetLoss = UNetPretrainer.Train(model, scaled, data.Captions, request.UnetSteps, request.BatchSize, request.LearningRate, request.Seed, afterStep, info, cancel);
        double unetSeconds = clock.Elapsed.TotalSeconds;

        var record = new PretrainRecord
        {
            Fingerprint = fingerprint,
            Request = canonical,
            ImageCount = data.Count,
            ScalingFactor = scaling,
            VaeFinalLoss = vaeLoss,
            UnetFinalLoss = unetLoss,
            VaeSeconds = vaeSeconds,
            EncodeSeconds = encodeSeconds,
            UnetSeconds = unetSeconds,
            TotalSeconds = total.Elapsed.TotalSeconds,
            VaeStepsPerSecond = request.VaeSteps / Math.Max(vaeSeconds, 1e-9),
            UnetStepsPerSecond = request.UnetSteps / Math.Max(unetSeconds, 1e-9),
        };
        cancel.ThrowIfCancellationRequested();
        PretrainedModelWriter.Write(outDir, arch, request.Resolution, model, scaling, record, PretrainArchitecture.BundledTokenizerFolder);
        return new PretrainResult(outDir, Reused: false, record);
    }

    private static CaptionedImages LoadData(PretrainRequest r) => r.ImagesDir is null
        ? CaptionedImages.FromFashionMnist(r.FashionMnistDir, r.Classes, r.MaxImages, r.Resolution, r.Captions)
        : CaptionedImages.FromFolder(r.ImagesDir, r.MaxImages, r.Resolution);

    /// Fresh modules from the architecture, initialised from the seed (the text encoder keeps this init).
    private static StableDiffusion Build(PretrainArchitecture arch, PretrainRequest r)
    {
        torch.manual_seed(r.Seed).Dispose(); // seeds the global generator; the returned wrapper is ours to free
        var vaeConfig = arch.VaeConfig(r.Resolution, 1.0);
        var latentSide = r.Resolution / vaeConfig.VaeScaleFactor;
        var textEncoder = TensorOwnership.Build(() => new ClipTextModel(arch.TextEncoderConfig()));
        textEncoder.eval();
        foreach (var p in textEncoder.parameters()) p.requires_grad = false;
        return new StableDiffusion
        {
            Tokenizer = ClipTokenizer.FromFolder(PretrainArchitecture.BundledTokenizerFolder),
            TextEncoder = textEncoder,
            Unet = TensorOwnership.Build(() => new UNet2DConditionModel(arch.UnetConfig(latentSide))),
            Vae = TensorOwnership.Build(() => new AutoencoderKL(vaeConfig)),
            SchedulerConfig = arch.SchedulerConfig(),
            Device = torch.CPU, // the trainers keep data and modules on the CPU
        };
    }
}
