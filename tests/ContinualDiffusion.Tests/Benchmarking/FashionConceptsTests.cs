using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Data;
using ContinualDiffusion.Imaging;

namespace ContinualDiffusion.Tests.Benchmarking;

public class FashionConceptsTests
{
    private static readonly Lazy<FashionMnist.Split> Train = new(() => FashionMnist.LoadTrain());

    [Fact]
    public void Concepts_are_three_kinds_of_top_then_two_kinds_of_shoe_and_base_prompts_the_coarse_groups()
    {
        Assert.Equal(["pullover", "T-shirt/top", "coat", "sandal", "ankle boot"], FashionConcepts.Labels.Select(FashionConcepts.Name));
        Assert.Equal("<v3> = coat", FashionConcepts.ConceptName(3));
        var prompts = FashionConcepts.BasePrompts("a photo of a {}");
        Assert.Equal(["a photo of a top", "a photo of a trouser", "a photo of a dress", "a photo of a shoe", "a photo of a bag"], prompts.Select(p => p.Prompt));
        Assert.Equal([0, 2, 4, 6], prompts[0].AcceptedLabels);
        Assert.Equal([5, 7, 9], prompts[3].AcceptedLabels);
        // every concept is a fine-grained class of a coarse group the base model knows
        Assert.All(FashionConcepts.Labels, l => Assert.Contains(FashionProtocol.CoarseName(l), new[] { "top", "shoe" }));
    }

    [Fact]
    public void Concept_images_are_chosen_deterministically_per_seed_from_the_class_images_pretraining_never_used()
    {
        var train = Train.Value;
        var a = FashionConcepts.ChooseImages(train, 4, 20, seed: 0);
        Assert.Equal(a, FashionConcepts.ChooseImages(train, 4, 20, seed: 0));
        Assert.NotEqual(a, FashionConcepts.ChooseImages(train, 4, 20, seed: 1));
        Assert.Equal(20, a.Distinct().Count());
        Assert.All(a, i => Assert.Equal(4, train.Labels[i]));
        var pretrainPool = FashionProtocol.PretrainPool(train, 4).ToHashSet();
        Assert.Equal(FashionProtocol.PretrainPoolPerClass, pretrainPool.Count);
        Assert.All(a, i => Assert.DoesNotContain(i, pretrainPool));
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

    [Fact]
    public void Concepts_option_reads_class_names_in_task_order_ignoring_case_and_punctuation()
    {
        Assert.Equal([2, 0, 4, 7, 9], FashionConcepts.Parse("Pullover, t-shirt, coat,sneaker,ankle-boot"));
        Assert.Equal([0, 9], FashionConcepts.Parse("T-shirt/top,ankle boot"));
        Assert.Equal("<v2> = sneaker", FashionConcepts.ConceptName(2, [5, 7]));
        var unknown = Assert.Throws<ContinualDiffusion.InputException>(() => FashionConcepts.Parse("pullover,jacket"));
        Assert.StartsWith("--concepts: 'jacket' is not a Fashion-MNIST class", unknown.Message);
        Assert.Contains("tshirt", unknown.Message);
        Assert.Contains("listed twice", Assert.Throws<ContinualDiffusion.InputException>(() => FashionConcepts.Parse("coat,Coat")).Message);
    }
}
