using ContinualDiffusion.Classification;
using ContinualDiffusion.Data;
using Xunit;

namespace ContinualDiffusion.Tests.Classification;

public sealed class ClassifyDatasetsTests
{
    [Fact]
    public void The_fashion_continual_set_has_the_digits_size_and_rule()
    {
        // 12 images of each class in label order a, b, a, b, …: the first 10 per class are kept, the 5th and 10th held out.
        var items = Enumerable.Range(0, 24).Select(i => (Pixels: Enumerable.Repeat((byte)i, 28 * 28).ToArray(), Label: i % 2)).ToList();
        var all = LabeledImages.From(items, ["a", "b"]);
        var (train, test) = ClassifyDatasets.FashionSubset(all, perClass: 10);
        Assert.Equal([8, 8], train.CountsPerClass());
        Assert.Equal([2, 2], test.CountsPerClass());
        // Class a's images are 0, 2, 4, …: its 5th and 10th are images 8 and 18; images 20 and 22 are past the cut.
        Assert.Equal([8, 18], Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == 0).Select(i => (int)test.Image(i)[0]));
        Assert.DoesNotContain(Enumerable.Range(0, train.Count), i => train.Image(i)[0] is 20 or 22 or 21 or 23);
        Assert.Equal(["a", "b"], train.ClassNames);
    }

    [Fact]
    public void The_real_fashion_set_gives_800_train_and_200_test_images_per_class()
    {
        var (train, test) = ClassifyDatasets.Continual("fashion");
        Assert.All(train.CountsPerClass(), c => Assert.Equal(800, c));
        Assert.All(test.CountsPerClass(), c => Assert.Equal(200, c));
        Assert.Equal(FashionMnist.ClassNames, train.ClassNames);
    }

    [Fact]
    public void An_unknown_dataset_is_refused_naming_the_option()
    {
        var e = Assert.Throws<InputException>(() => ClassifyDatasets.Continual("cifar"));
        Assert.Equal("--dataset cifar: expected one of mnist, fashion", e.Message);
        Assert.NotEqual(ClassifyDatasets.Fingerprint("mnist"), ClassifyDatasets.Fingerprint("fashion"));
    }
}
