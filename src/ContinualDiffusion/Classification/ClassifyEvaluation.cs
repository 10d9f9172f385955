using ContinualDiffusion.Classification.Methods;
using ContinualDiffusion.Data;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// Class-incremental accuracy: every test image of a class learned so far is classified among all those classes,
/// with no task id.
public static class ClassifyEvaluation
{
    /// Per task so far: the accuracy on the test images of that task's classes (a row of the accuracy matrix).
    public static double[] AccuracyPerTask(ClassIncrementalLearner learner, LabeledImages test, IReadOnlyList<IReadOnlyList<int>> taskClasses, int batchSize = 256)
    {
        var correct = new long[taskClasses.Count];
        var total = new long[taskClasses.Count];
        var taskOf = new Dictionary<int, int>();
        for (int t = 0; t < taskClasses.Count; t++) foreach (var c in taskClasses[t]) taskOf[c] = t;
        var seen = test.OfClasses(taskOf.Keys.ToHashSet());
        using var noGrad = torch.no_grad();
        foreach (var (pixels, indices) in ImageBatches.Batches(seen, batchSize))
        {
            using var scope = torch.NewDisposeScope();
            using var _ = pixels;
            var predicted = learner.Predict(pixels).argmax(1).data<long>().ToArray();
            for (int j = 0; j < indices.Length; j++)
            {
                int label = seen.Labels[indices[j]];
                int t = taskOf[label];
                total[t]++;
                if (learner.Classes[(int)predicted[j]] == label) correct[t]++;
            }
        }
        return [.. Enumerable.Range(0, taskClasses.Count).Select(t => total[t] == 0 ? double.NaN : (double)correct[t] / total[t])];
    }

    /// Accuracy over all test images of the classes so far (each image counts once).
    public static double Overall(ClassIncrementalLearner learner, LabeledImages test, IReadOnlyList<IReadOnlyList<int>> taskClasses)
    {
        var perTask = AccuracyPerTask(learner, test, taskClasses);
        var counts = test.CountsPerClass();
        double weighted = 0; long n = 0;
        for (int t = 0; t < taskClasses.Count; t++)
        {
            long size = taskClasses[t].Sum(c => (long)counts[c]);
            if (size == 0) continue; // no test image of this task's classes (a user's test folders may leave some out)
            weighted += perTask[t] * size;
            n += size;
        }
        return n == 0 ? double.NaN : weighted / n;
    }
}
