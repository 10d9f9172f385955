using System.Diagnostics;
using System.Globalization;
using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Models;
using ContinualDiffusion.Pretraining;
using TorchSharp;

namespace ContinualDiffusion.Benchmarks;

/// How well a (pretrained) model draws the Fashion-MNIST classes its prompts name, judged by the cached
/// Fashion-MNIST classifier:
///   bench prompts --model DIR [--classes 0,1,3,5,8] [--samples 20] [--steps 20] [--guidance 4]
///                 [--classifier $CDIFF_CACHE/fashion-classifier-v3.safetensors] [--recon 200]
/// With --recon N it first prints the classifier's accuracy on N real test images per class passed through the
/// model's VAE (encode mean, decode): the ceiling any prompt accuracy can reach through that decoder.
internal static class PromptAccuracyBenchmark
{
    public static int Run(string[] args)
    {
        var o = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i + 1 < args.Length; i += 2) o[args[i].TrimStart('-')] = args[i + 1];
        int Int(string k, int d) => o.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;
        var classes = o.GetValueOrDefault("classes", "0,1,3,5,8").Split(',').Select(int.Parse).ToList();
        var classifierPath = o.GetValueOrDefault("classifier", ClassifierCache.DefaultPath);
        var settings = new PromptClassAccuracy.Settings(SamplesPerPrompt: Int("samples", 20), Steps: Int("steps", 20),
            Guidance: o.TryGetValue("guidance", out var g) ? double.Parse(g, CultureInfo.InvariantCulture) : 4.0, Batch: Int("samples", 20));
        using var model = StableDiffusion.Load(DiffusersFolder.Open(o["model"]));
        using var classifier = ClassifierTraining.Load(classifierPath);
        if (o.TryGetValue("recon", out var recon))
            PrintReconstructionAccuracy(model, classifier, classes, int.Parse(recon, CultureInfo.InvariantCulture));
        var clock = Stopwatch.StartNew();
        var scores = PromptClassAccuracy.Measure(model, classifier, classes.Select(c => (c, CaptionedImages.FashionPrompt(c))).ToList(), settings);
        foreach (var s in scores)
            Console.WriteLine($"{s.Prompt,-28} {s.Accuracy,6:P0}  predicted {string.Join(" ", s.Predicted.OrderByDescending(p => p.Value).Select(p => $"{p.Key}:{p.Value}"))}");
        Console.WriteLine($"mean {scores.Average(s => s.Accuracy):P1} over {scores.Count} classes, {settings.SamplesPerPrompt} samples each, {settings.Steps} DDIM steps, guidance {settings.Guidance} ({clock.Elapsed.TotalSeconds:F0} s)");
        return 0;
    }

    private static void PrintReconstructionAccuracy(StableDiffusion model, FashionClassifier classifier, IReadOnlyList<int> classes, int perClass)
    {
        var test = FashionMnist.LoadTest();
        classifier.eval();
        var accuracies = new List<double>();
        foreach (int label in classes)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var x = FashionImages.ToTensor(test, test.IndicesOf(label).Take(perClass).ToList(), channels: 3);
            var (mean, _) = model.Vae.Encode(x);
            // Scored exactly like generated samples: (N, H, W, 3) in [0, 1] through PromptClassAccuracy.Classify.
            var recon = ((model.Vae.Decode(mean).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1);
            var predicted = PromptClassAccuracy.Classify(classifier, recon);
            double accuracy = predicted.Count(p => p == label) / (double)predicted.Length;
            accuracies.Add(accuracy);
            Console.WriteLine($"VAE reconstruction {FashionMnist.ClassNames[label],-12} {accuracy,6:P0}");
        }
        Console.WriteLine($"VAE reconstruction mean {accuracies.Average():P1} ({perClass} test images per class)");
    }
}
