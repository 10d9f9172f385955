using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Data;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Evaluation;

/// Trains and evaluates the Fashion-MNIST scoring classifier; saves it so benchmark runs reuse it.
public static class ClassifierTraining
{
    public sealed record Options(int Epochs = 3, int BatchSize = 128, double LearningRate = 4e-3, long Seed = 0, int? Limit = null);

    public static FashionClassifier Train(FashionMnist.Split train, Options o, Action<string>? progress = null)
    {
        torch.manual_seed(o.Seed).Dispose(); // seeds the global generator; the returned wrapper is ours to free
        var model = Runtime.TensorOwnership.Build(() => new FashionClassifier());
        model.train();
        using var optimizer = new AdamW([new AdamW.Group("classifier", model.parameters().Cast<Tensor>().ToList(), o.LearningRate, WeightDecay: 1e-4)]);
        var rng = new Random((int)o.Seed);
        int n = Math.Min(o.Limit ?? train.Count, train.Count);
        int batchesPerEpoch = (n + o.BatchSize - 1) / o.BatchSize, totalSteps = o.Epochs * batchesPerEpoch, step = 0;
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            var order = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
            double lossSum = 0; int batches = 0;
            for (int start = 0; start < n; start += o.BatchSize)
            {
                using var scope = torch.NewDisposeScope();
                var idx = order[start..Math.Min(n, start + o.BatchSize)];
                var x = Augment(FashionImages.ToTensor(train, idx), rng);
                var y = torch.tensor(idx.Select(i => (long)train.Labels[i]).ToArray());
                optimizer.ZeroGrad();
                var loss = nn.functional.cross_entropy(model.forward(x), y);
                loss.backward();
                // The warm-up + cosine schedule: ending the short run at a low rate is worth more accuracy
                // than another epoch at a constant one.
                optimizer.Step(LearningRateSchedule.Scale(++step, totalSteps));
                lossSum += loss.item<float>(); batches++;
                // An epoch takes minutes on a small CPU: show that it is alive.
                if (batches % 100 == 0) progress?.Invoke($"classifier epoch {epoch + 1}/{o.Epochs}: batch {batches}/{batchesPerEpoch}, loss {lossSum / batches:F4}");
            }
            progress?.Invoke($"classifier epoch {epoch + 1}/{o.Epochs}: loss {lossSum / batches:F4}");
        }
        model.eval();
        return model;
    }

    /// Random horizontal flips: garments are left-right symmetric classes, so this is free extra data.
    private static Tensor Augment(Tensor x, Random rng) => rng.Next(2) == 0 ? x : x.flip(3);

    /// Fraction of the split classified correctly.
    public static double Accuracy(FashionClassifier model, FashionMnist.Split split, int? limit = null) =>
        Accuracy(model, split, Enumerable.Range(0, Math.Min(limit ?? split.Count, split.Count)).ToArray());

    /// Accuracy on the images of one class only (the ceiling a generated concept of that class can reach).
    public static double ClassAccuracy(FashionClassifier model, FashionMnist.Split split, int label) =>
        Accuracy(model, split, split.IndicesOf(label).ToArray());

    private static double Accuracy(FashionClassifier model, FashionMnist.Split split, int[] indices)
    {
        model.eval();
        using var noGrad = torch.no_grad();
        int n = indices.Length, correct = 0;
        for (int start = 0; start < n; start += 500)
        {
            using var scope = torch.NewDisposeScope();
            var idx = indices[start..Math.Min(n, start + 500)];
            var pred = model.forward(FashionImages.ToTensor(split, idx)).argmax(1);
            var y = torch.tensor(idx.Select(i => (long)split.Labels[i]).ToArray());
            correct += (int)pred.eq(y).sum().item<long>();
        }
        return (double)correct / n;
    }

    public static void Save(FashionClassifier model, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensorsFile.Save(path, StateDictLoader.Targets(model), metadata);

    public static FashionClassifier Load(string path)
    {
        var model = Runtime.TensorOwnership.Build(() => new FashionClassifier());
        StateDictLoader.LoadStrict(model, path);
        model.eval();
        return model;
    }
}
