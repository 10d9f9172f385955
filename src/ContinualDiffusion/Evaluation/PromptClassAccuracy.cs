using ContinualDiffusion.Runtime;
using ContinualDiffusion.Data;
using ContinualDiffusion.Models;
using ContinualDiffusion.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Evaluation;

/// A prompt and the classes that count as drawing it: `Label` seeds the sampling (and names the prompt's class),
/// `Accepted` defaults to [Label]; a coarse prompt ("a photo of a shoe") accepts every class of its group.
public sealed record PromptTarget(int Label, string Prompt, IReadOnlyList<int>? Accepted = null)
{
    public IReadOnlyList<int> AcceptedLabels => Accepted ?? [Label];
}

/// How often the images generated for a prompt are classified as one of the classes it accepts.
public sealed record ClassPromptScore(int Label, string Prompt, int Samples, int Correct, IReadOnlyDictionary<int, int> Predicted)
{
    public double Accuracy => Samples == 0 ? 0 : (double)Correct / Samples;
}

/// Checks that a text-to-image model draws what a class prompt asks for: samples each prompt and lets the
/// Fashion-MNIST classifier say which class every image shows.
public static class PromptClassAccuracy
{
    public sealed record Settings(int SamplesPerPrompt = 50, int Steps = 25, double Guidance = 4.0, long Seed = 1234, int Batch = 50, string Scheduler = "ddim", double GuidanceRescale = 0);

    /// `onImages` receives each class's images (N, H, W, 3) in [0, 1] (e.g. for a grid) before they are disposed.
    public static IReadOnlyList<ClassPromptScore> Measure(StableDiffusion model, FashionClassifier classifier,
        IReadOnlyList<PromptTarget> prompts, Settings s, Action<int, Tensor>? onImages = null, CancellationToken cancel = default)
    {
        classifier.eval();
        var scores = new List<ClassPromptScore>();
        foreach (var target in prompts)
        {
            var (label, prompt) = (target.Label, target.Prompt);
            var predicted = new Dictionary<int, int>();
            var images = new List<Tensor>();
            try
            {
                for (int done = 0; done < s.SamplesPerPrompt; done += s.Batch)
                {
                    int n = Math.Min(s.Batch, s.SamplesPerPrompt - done);
                    var request = new SampleRequest { Prompt = prompt, Steps = s.Steps, Guidance = s.Guidance, GuidanceRescale = s.GuidanceRescale, Scheduler = s.Scheduler, Seed = s.Seed + label * 7919 + done, NumImages = n };
                    var batch = new TextToImagePipeline(model).Generate(request, cancel: cancel);
                    images.Add(batch);
                    foreach (int p in Classify(classifier, batch)) predicted[p] = predicted.GetValueOrDefault(p) + 1;
                }
                if (onImages is not null)
                {
                    using var all = torch.cat(images);
                    onImages(label, all);
                }
            }
            finally
            {
                foreach (var t in images) t.Dispose();
            }
            int correct = target.AcceptedLabels.Sum(l => predicted.GetValueOrDefault(l));
            scores.Add(new ClassPromptScore(label, prompt, s.SamplesPerPrompt, correct, predicted));
        }
        return scores;
    }

    /// Generated (N, H, W, 3) in [0, 1] → the classifier's grey 32×32 input in [-1, 1] → predicted labels.
    public static int[] Classify(FashionClassifier classifier, Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return classifier.forward(ClassifierInput(images)).argmax(1).data<long>().Select(v => (int)v).ToArray();
    }

    /// Generated (N, H, W, 3) in [0, 1] → the classifier's grey (N, 1, 32, 32) input in [-1, 1].
    public static Tensor ClassifierInput(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var x = FashionImages.ToGrey(images.permute(0, 3, 1, 2).Times(2).Minus(1));
        if (x.shape[2] != FashionImages.Side || x.shape[3] != FashionImages.Side)
            x = nn.functional.interpolate(x, [FashionImages.Side, FashionImages.Side], mode: InterpolationMode.Bilinear, align_corners: false);
        return x.MoveToOuterDisposeScope();
    }
}
