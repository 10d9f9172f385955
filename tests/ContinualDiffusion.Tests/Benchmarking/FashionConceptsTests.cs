using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Data;
using ContinualDiffusion.Imaging;

namespace ContinualDiffusion.Tests.Benchmarking;

public class FashionConceptsTests
{
    private static readonly Lazy<FashionMnist.Split> Train = new(() => FashionMnist.LoadTrain());

    [Fact]
    public void Held_out_classes_are_pullover_coat_shirt_sneaker_ankle_boot_and_base_classes_the_rest()
    {
        Assert.Equal(["pullover", "coat", "shirt", "sneaker", "ankle boot"], FashionConcepts.HeldOutLabels.Select(FashionConcepts.Name));
        Assert.Equal([0, 1, 3, 5, 8], FashionConcepts.BaseLabels);
        Assert.Equal("<v2> = coat", FashionConcepts.ConceptName(2));
    }

    [Fact]
    public void Concept_images_are_chosen_deterministically_per_seed_from_the_held_out_class_only()
    {
        var train = Train.Value;
        var a = FashionConcepts.ChooseImages(train, 4, 20, seed: 0);
        Assert.Equal(a, FashionConcepts.ChooseImages(train, 4, 20, seed: 0));
        Assert.NotEqual(a, FashionConcepts.ChooseImages(train, 4, 20, seed: 1));
        Assert.Equal(20, a.Distinct().Count());
        Assert.All(a, i => Assert.Equal(4, train.Labels[i]));
    }

    [Fact]
    public void The_concept_folder_holds_32_pixel_pngs_of_the_chosen_images()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"cdiff-concept-{Guid.NewGuid():N}");
        try
        {
            FashionConcepts.WriteFolder(Train.Value, 7, 3, seed: 2, dir);
            var files = Directory.GetFiles(dir, "*.png");
            Assert.Equal(3, files.Length);
            Assert.All(files, f => Assert.StartsWith("sneaker-", Path.GetFileName(f)));
            var (image, _) = PngFile.Load(files[0]);
            using (image) Assert.Equal(new long[] { 32, 32, 3 }, image.shape);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
