using ContinualDiffusion.Runtime;
using System.Diagnostics;
using ContinualDiffusion.Models;
using ContinualDiffusion.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Sampling;

/// Text-to-image sampling with classifier-free guidance, step for step as diffusers' StableDiffusionPipeline:
/// prompt → tokens → text states (once) → scheduler loop over the UNet on a doubled batch
/// [negative, positive] → latents / scaling_factor → VAE decode → images in [0, 1].
public sealed class TextToImagePipeline(StableDiffusion model)
{
    /// Images (N, H, W, 3) float32 in [0, 1] on the CPU.
    public Tensor Generate(SampleRequest request, IProgress<SampleProgress>? progress = null, Action<string>? warn = null,
        CancellationToken cancel = default, Action<Tensor>? latentsAfterStep = null)
    {
        var (height, width) = Resolve(request);
        using var outer = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        var context = EncodePrompts(request, warn);
        using var scheduler = SchedulerFactory.Create(model.SchedulerConfig, request.Scheduler);
        scheduler.SetTimesteps(request.Steps);
        var latents = InitialLatents(request, height, width, scheduler.InitNoiseSigma);

        int k = 0;
        foreach (var t in scheduler.Timesteps)
        {
            cancel.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            using (var step = torch.NewDisposeScope())
            {
                var next = DenoiseStep(scheduler, latents, t, context, request.Guidance, request.GuidanceRescale);
                latents.Dispose();
                latents = next.MoveToOuterDisposeScope();
            }
            latentsAfterStep?.Invoke(latents);
            progress?.Report(new SampleProgress(++k, scheduler.Timesteps.Count, clock.Elapsed.TotalSeconds));
        }
        return Decode(latents).cpu().MoveToOuterDisposeScope();
    }

    /// Negative and positive prompt states, stacked as diffusers does: cat([negative, positive]) (2N, 77, D).
    private Tensor EncodePrompts(SampleRequest request, Action<string>? warn)
    {
        var prompts = Enumerable.Repeat(request.NegativePrompt, request.NumImages)
            .Concat(Enumerable.Repeat(request.Prompt, request.NumImages)).ToList();
        using var ids = model.Tokenize(prompts, warn);
        return model.TextEncoder.forward(ids);
    }

    private Tensor InitialLatents(SampleRequest request, int height, int width, double initNoiseSigma)
    {
        long[] shape = [request.NumImages, model.Unet.Config.InChannels, height / model.VaeScaleFactor, width / model.VaeScaleFactor];
        Tensor noise;
        if (request.Latents is { } given)
        {
            if (!given.shape.SequenceEqual(shape))
                throw new InputException($"--latents: tensor 'latents' has shape [{string.Join(", ", given.shape)}], expected [{string.Join(", ", shape)}]");
            noise = given.to_type(ScalarType.Float32).to(model.Device);
        }
        else
        {
            using var gen = new Generator(unchecked((ulong)request.Seed));
            noise = torch.randn(shape, generator: gen).to(model.Device);
        }
        return noise.Times(initNoiseSigma);
    }

    private Tensor DenoiseStep(IScheduler scheduler, Tensor latents, Timestep t, Tensor context, double guidance, double rescale)
    {
        var doubled = torch.cat([latents, latents]);
        var input = scheduler.ScaleModelInput(doubled, t);
        var noise = model.Unet.forward(input, t.ToTensor(model.Device), context);
        var chunks = noise.chunk(2);
        var guided = ClassifierFreeGuidance.Combine(chunks[0], chunks[1], guidance, rescale);
        return scheduler.Step(guided, t, latents);
    }

    /// latents / scaling_factor → VAE decoder → (x / 2 + 0.5).clamp(0, 1) → NHWC.
    private Tensor Decode(Tensor latents)
    {
        var image = model.Vae.Decode(latents.DividedBy(model.Vae.ScalingFactor));
        return image.DividedBy(2).Plus(0.5).Clamped(0, 1).permute(0, 2, 3, 1).contiguous();
    }

    private (int Height, int Width) Resolve(SampleRequest r)
    {
        int f = model.VaeScaleFactor;
        int defaultSide = model.Unet.Config.SampleSize * f;
        int h = r.Height ?? defaultSide, w = r.Width ?? defaultSide;
        if (h <= 0 || w <= 0 || h % 8 != 0 || w % 8 != 0)
            throw new InputException($"--height/--width: {h}x{w} must be positive multiples of 8");
        if (r.Steps <= 0) throw new InputException($"--steps: {r.Steps} must be > 0");
        if (r.NumImages <= 0) throw new InputException($"--num-images: {r.NumImages} must be > 0");
        if (!double.IsFinite(r.Guidance) || r.Guidance < 0) throw new InputException($"--guidance: {r.Guidance} must be a number >= 0");
        if (!(r.GuidanceRescale is >= 0 and <= 1)) throw new InputException($"--guidance-rescale: {r.GuidanceRescale} must be a number from 0 to 1");
        model.Tokenizer.ThrowIfUnknownConceptTokens(r.Prompt);
        model.Tokenizer.ThrowIfUnknownConceptTokens(r.NegativePrompt);
        return (h, w);
    }
}
