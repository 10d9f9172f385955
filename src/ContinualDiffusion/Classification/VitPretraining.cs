using System.Diagnostics;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// Supervised pretraining of the ViT backbone on a labelled set (Fashion-MNIST's train split by default): AdamW,
/// linear warm-up and cosine decay, cross-entropy over the set's classes, random ±2-pixel shifts as the only
/// augmentation. The continual classes must be disjoint from these (they come from another dataset).
public static class VitPretraining
{
    public sealed record Options
    {
        public int Epochs { get; init; } = 15;
        public int BatchSize { get; init; } = 128;
        public double LearningRate { get; init; } = 2e-3;
        public double WeightDecay { get; init; } = 0.05;
        public long Seed { get; init; }
        /// Use only the first N training images (tests and smoke runs).
        public int? Limit { get; init; }
    }

    public sealed record Result(double TestAccuracy, double FinalLoss, int Steps, double Seconds);

    /// Trains `model` in place and measures its accuracy on `test`.
    public static Result Train(VisionTransformer model, LabeledImages train, LabeledImages test, Options options,
        Action<int, int, double>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(options.LearningRate > 0 && double.IsFinite(options.LearningRate))) throw new InputException($"--lr {options.LearningRate}: must be a positive finite number");
        if (train.ClassNames.Count != model.PretrainingClasses)
            throw new ArgumentException($"the model's head has {model.PretrainingClasses} classes, the data {train.ClassNames.Count}");
        var clock = Stopwatch.StartNew();
        var set = options.Limit is { } limit && limit < train.Count ? train.Select([.. Enumerable.Range(0, limit)]) : train;
        model.train();
        foreach (var p in model.parameters()) p.requires_grad = true;
        using var optimizer = new AdamW([new AdamW.Group("vit", [.. model.parameters()], options.LearningRate, options.WeightDecay)]);
        var rng = new Random(unchecked((int)options.Seed));
        int perEpoch = (set.Count + options.BatchSize - 1) / options.BatchSize, total = perEpoch * options.Epochs, step = 0;
        double last = double.NaN;
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            foreach (var (pixels, indices) in ImageBatches.Batches(set, options.BatchSize, options.Seed * 31 + epoch))
            {
                using var scope = torch.NewDisposeScope();
                using var _ = pixels;
                cancel.ThrowIfCancellationRequested();
                var x = Shift(pixels, rng);
                var y = torch.tensor(indices.Select(i => (long)set.Labels[i]).ToArray());
                optimizer.ZeroGrad();
                var loss = nn.functional.cross_entropy(model.forward(x), y);
                loss.backward();
                optimizer.Step(LearningRateSchedule.Scale(++step, total));
                last = loss.item<float>();
                if (!double.IsFinite(last)) throw new TrainingDivergedException($"ViT pretraining: the loss became {last} at step {step}; nothing was written (try a lower --lr)");
                progress?.Invoke(step, total, last);
            }
        }
        model.eval();
        double accuracy = Accuracy(model, test);
        return new Result(accuracy, last, step, clock.Elapsed.TotalSeconds);
    }

    /// The pretraining head's accuracy on `test`.
    public static double Accuracy(VisionTransformer model, LabeledImages test, int batchSize = 256)
    {
        long correct = 0;
        using var noGrad = torch.no_grad();
        foreach (var (pixels, indices) in ImageBatches.Batches(test, batchSize))
        {
            using var scope = torch.NewDisposeScope();
            using var _ = pixels;
            var predicted = model.forward(pixels).argmax(1).data<long>().ToArray();
            for (int j = 0; j < indices.Length; j++) if (predicted[j] == test.Labels[indices[j]]) correct++;
        }
        return (double)correct / test.Count;
    }

    /// The batch shifted by one random offset in [−2, 2]² (zero-padded, background is −1).
    private static Tensor Shift(Tensor x, Random rng)
    {
        int dx = rng.Next(-2, 3), dy = rng.Next(-2, 3);
        if (dx == 0 && dy == 0) return x.alias();
        using var scope = torch.NewDisposeScope();
        long h = x.shape[2], w = x.shape[3];
        var padded = nn.functional.pad(x, [2, 2, 2, 2], value: -1.0);
        return padded.narrow(2, 2 + dy, h).narrow(3, 2 + dx, w).contiguous().MoveToOuterDisposeScope();
    }
}
