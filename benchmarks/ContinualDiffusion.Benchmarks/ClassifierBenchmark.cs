using System.Diagnostics;
using System.Globalization;
using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;

namespace ContinualDiffusion.Benchmarks;

/// Trains the Fashion-MNIST scoring classifier with the given options and prints its wall time and test accuracy
/// (the figures behind ClassifierTraining's defaults):
///   scripts/bench.sh classifier [--epochs 3] [--lr 4e-3] [--batch 128] [--seed 0]
internal static class ClassifierBenchmark
{
    public static int Run(string[] args)
    {
        var o = BenchOptions.Parse("classifier", args, "epochs", "lr", "batch", "seed");
        var defaults = new ClassifierTraining.Options();
        var options = defaults with
        {
            Epochs = o.Int("epochs", defaults.Epochs),
            LearningRate = o.Positive("lr", defaults.LearningRate),
            BatchSize = o.Int("batch", defaults.BatchSize),
            Seed = o.Long("seed", defaults.Seed),
        };
        Runtime.TorchSetup.Initialize();
        var train = FashionMnist.LoadTrain();
        var test = FashionMnist.LoadTest();
        var clock = Stopwatch.StartNew();
        using var model = ClassifierTraining.Train(train, options, Console.WriteLine);
        double seconds = clock.Elapsed.TotalSeconds;
        double accuracy = ClassifierTraining.Accuracy(model, test);
        Console.WriteLine($"{options}: trained in {seconds:F0} s, test accuracy {accuracy:P2}");
        return 0;
    }
}
