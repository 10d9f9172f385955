using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Imaging;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

/// Latents held per aspect bucket: index i is image i (N + i its mirror image) whatever bucket holds it.
public class ConceptLatentsTests
{
    /// What `cdiff train` does without buckets (ImageFolder's one group of every image) is the tensor overload exactly.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void One_group_of_every_image_gives_the_latents_of_the_tensor_overload(bool flips)
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        using var g = new Generator(5);
        var images = torch.rand(3, 3, 32, 32, generator: g).Times(2).Minus(1);
        using var grouped = ConceptLatents.Encode(model.Vae, [new ImageGroup(32, 32, [0, 1, 2], images)], 3, flips);
        using var plain = ConceptLatents.Encode(model.Vae, images, flips);
        long[] indices = flips ? [5, 0, 3, 2] : [2, 0, 1];
        using var g1 = new Generator(8);
        using var g2 = new Generator(8);
        Support.Fixture.AssertIdentical(grouped.Sample(indices, g1), plain.Sample(indices, g2), $"flips {flips}");
    }

    [Fact]
    public void Bucketed_latents_are_each_images_own_and_a_batch_stays_in_one_bucket()
    {
        using var scope = torch.NewDisposeScope();
        using var model = StableDiffusion.Load(DiffusersFolder.Open(Fixture.SdTiny));
        using var g = new Generator(3);
        var wide = torch.rand(2, 3, 24, 40, generator: g).Times(2).Minus(1);
        var tall = torch.rand(1, 3, 40, 24, generator: g).Times(2).Minus(1);
        // images 0 and 2 are wide, image 1 tall
        using var latents = ConceptLatents.Encode(model.Vae, [new ImageGroup(24, 40, [1], tall), new ImageGroup(40, 24, [0, 2], wide)], 3, withFlips: true);
        Assert.Equal(6, latents.Count);
        Assert.Equal(2, latents.BucketCount);
        Assert.Equal([1L, 4L], latents.Bucket(latents.BucketOf(1)));
        Assert.Equal([0L, 2L, 3L, 5L], latents.Bucket(latents.BucketOf(5)));

        // Image 2's mirror image (index 5) alone, with the same posterior noise, is what the bucketed latents give.
        var image2Mirror = wide[1..2].flip(3);
        using var alone = ConceptLatents.Encode(model.Vae, image2Mirror, withFlips: false);
        using (var g1 = new Generator(9)) using (var g2 = new Generator(9))
            Fixture.AssertClose(latents.Sample([5], g1), alone.Sample([0], g2), 1e-5, "index 5 = image 2 mirrored");
        using (var g3 = new Generator(9))
            Assert.Equal(new long[] { 2, 4, 20, 12 }, latents.Sample([4, 1], g3).shape); // the tall one and its mirror: 24 wide, 40 high; sd-tiny's VAE halves
        using var g4 = new Generator(9);
        Assert.Throws<ArgumentException>(() => latents.Sample([0, 1], g4));
    }
}
