using ContinualDiffusion.Runtime;
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
///   bench prompts --model DIR [--captions coarse|class] [--classes 0,...,9 (recon; prompts with --captions class)] [--samples 20] [--steps 20] [--guidance 4[,7.5...]]
///                 or --run DIR --concepts 2,4,6 (scores "a photo of <v1>" as label 2, <v2> as 4, ...)
///                 [--classifier $CDIFF_CACHE/fashion-classifier-v3.safetensors] [--recon 200]
/// With --recon N it first prints the classifier's accuracy on N real test images per class passed through the
/// model's VAE (encode mean, decode): the ceiling any prompt accuracy can reach through that decoder.
internal static class PromptAccuracyBenchmark
{
    public static int Run(string[] args)
    {
        var o = BenchOptions.Parse("prompts", args, "model", "run", "concepts", "captions", "classes", "samples", "steps", "guidance", "classifier", "recon");
        var classes = o.Ints("classes", "0,1,2,3,4,5,6,7,8,9", min: 0, max: 9).ToList();
        bool coarse = o.OneOf("captions", "coarse", "coarse", "class") == "coarse"; // the model's prompts: coarse groups or one per class
        var classifierPath = o.Text("classifier", ClassifierCache.DefaultPath);
        var settings = new PromptClassAccuracy.Settings(SamplesPerPrompt: o.Int("samples", 20), Steps: o.Int("steps", 20), Batch: o.Int("samples", 20));
        var concepts = o.Has("concepts") ? o.Ints("concepts", "", min: 0, max: 9).ToList() : null;
        int? recon = o.Has("recon") ? o.Int("recon", 0) : null;
        var guidances = o.Positives("guidance", "4", zeroAllowed: true);
        // --run DIR --concepts 2,4: score the run's tokens "a photo of <v1>", "<v2>", ... as those labels instead.
        using var model = o.Get("run") is { } run
            ? ContinualDiffusion.Runs.RunModel.LoadForSampling(new ContinualDiffusion.Runs.RunDirectory(run))
            : StableDiffusion.Load(DiffusersFolder.Open(o.Required("model")));
        // trained (3 epochs, as cdiff benchmark does) and saved there when the file does not exist yet
        using var classifier = ClassifierCache.LoadOrTrain(classifierPath, FashionMnist.LoadTrain(), FashionMnist.LoadTest(), 3, Console.WriteLine).Model;
        if (recon is { } perClass)
            PrintReconstructionAccuracy(model, classifier, classes, perClass);
        var prompts = concepts is not null
            ? concepts.Select((label, i) => new PromptTarget(label, $"a photo of {ContinualDiffusion.Text.ConceptTokens.Name(i + 1)}")).ToList()
            : coarse ? FashionConcepts.BasePrompts("a photo of a {}") : classes.Select(c => new PromptTarget(c, CaptionedImages.FashionPrompt(c))).ToList();
        // --guidance 4,7.5: one pass per scale, same seeds
        foreach (var scale in guidances)
        {
            var clock = Stopwatch.StartNew();
            var at = settings with { Guidance = scale };
            var scores = PromptClassAccuracy.Measure(model, classifier, prompts, at);
            foreach (var s in scores)
                Console.WriteLine($"{s.Prompt,-28} {s.Accuracy,6:P0}  predicted {string.Join(" ", s.Predicted.OrderByDescending(p => p.Value).Select(p => $"{p.Key}:{p.Value}"))}");
            Console.WriteLine($"mean {scores.Average(s => s.Accuracy):P1} over {scores.Count} prompts, {at.SamplesPerPrompt} samples each, {at.Steps} DDIM steps, guidance {at.Guidance} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        return 0;
    }

    /// concept-images --out DIR [--seed 0] [--count 20] [--labels 2,4,6,7,9]: each benchmark concept's training images (the same choice
    /// `cdiff benchmark` makes for that seed) as DIR/<class>/*.png, for training concepts by hand with `cdiff train`.
    public static int WriteConceptImages(string[] args)
    {
        var o = BenchOptions.Parse("concept-images", args, "out", "seed", "count", "labels");
        string outDir = o.Required("out");
        long seed = o.Long("seed", 0);
        int count = o.Int("count", 20);
        var labels = o.Has("labels") ? o.Ints("labels", "", min: 0, max: 9).ToList() : [.. FashionConcepts.Labels];
        var train = FashionMnist.LoadTrain();
        foreach (int label in labels)
        {
            var dir = FashionConcepts.WriteFolder(train, label, count, seed, Path.Combine(outDir, FashionConcepts.Name(label).Replace(' ', '-').Replace('/', '-')));
            Console.WriteLine($"{label} {dir}");
        }
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
            var recon = model.Vae.Decode(mean).Clamped(-1, 1).Plus(1).DividedBy(2).permute(0, 2, 3, 1);
            var predicted = PromptClassAccuracy.Classify(classifier, recon);
            double accuracy = predicted.Count(p => p == label) / (double)predicted.Length;
            accuracies.Add(accuracy);
            Console.WriteLine($"VAE reconstruction {FashionMnist.ClassNames[label],-12} {accuracy,6:P0}");
        }
        Console.WriteLine($"VAE reconstruction mean {accuracies.Average():P1} ({perClass} test images per class)");
    }
}
