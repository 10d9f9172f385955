using ContinualDiffusion.Data;
using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Runtime;
using TorchSharp;

namespace ContinualDiffusion.Tests.Evaluation;

public class MetricsTests
{
    [Fact]
    public void Final_average_and_forgetting_match_a_hand_computed_matrix()
    {
        double[][] r =
        [
            [0.9],
            [0.7, 0.8],
            [0.5, 0.9, 0.6],
        ];
        Assert.Equal((0.5 + 0.9 + 0.6) / 3, ContinualMetrics.FinalAverage(r), 12);
        // concept 0: best before last 0.9, final 0.5 -> 0.4; concept 1: best 0.8, final 0.9 -> -0.1
        Assert.Equal((0.4 + -0.1) / 2, ContinualMetrics.Forgetting(r), 12);
    }

    [Fact]
    public void Kid_matches_a_hand_computed_unbiased_estimate_and_separates_shifted_samples()
    {
        // x = {(1,0), (0,1), (1,1)}, y = {(0,0), (2,1)}, k(a,b) = (a·b/2 + 1)³; the off-diagonal means computed in
        // plain Python (no numpy): KXX 2.2083333, KYY 1, KXY 3.8125 → KID = -6.416666666666666.
        using var x = torch.tensor(new float[] { 1, 0, 0, 1, 1, 1 }, [3, 2]);
        using var y = torch.tensor(new float[] { 0, 0, 2, 1 }, [2, 2]);
        Assert.Equal(-6.416666666666666, Kid.Compute(x, y), 10);
        Assert.Equal(Kid.Compute(x, y), Kid.Compute(y, x), 10);

        using var g = new torch.Generator(7);
        using var a = torch.randn([400, 16], generator: g);
        using var b = torch.randn([400, 16], generator: g);
        using var c = torch.randn([400, 16], generator: g).Plus(0.5);
        double same = Kid.Compute(a, b), shifted = Kid.Compute(a, c);
        Assert.InRange(same, -0.05, 0.05);
        Assert.True(shifted > 0.5 && shifted > 10 * Math.Abs(same), $"shifted {shifted}, same {same}");
    }

    [Fact]
    public void Mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift()
    {
        torch.manual_seed(3);
        using var a = torch.randn(300, 8);
        using var b = torch.randn(300, 8);
        using var c = torch.randn(300, 8).Plus(1.0);
        double same = Mmd.Squared(a, b), shifted = Mmd.Squared(a, c);
        Assert.InRange(same, -0.01, 0.01);
        Assert.True(shifted > 10 * Math.Abs(same) && shifted > 0.05, $"shifted {shifted}, same {same}");
        Assert.Equal(Mmd.Squared(a, c, 2.0), Mmd.Squared(c, a, 2.0), 9);
    }

    [Fact]
    public void The_classifier_learns_from_a_small_subset()
    {
        var train = FashionMnist.LoadTrain();
        var test = FashionMnist.LoadTest();
        var model = ClassifierTraining.Train(train, new ClassifierTraining.Options(Epochs: 2, Limit: 3000));
        double acc = ClassifierTraining.Accuracy(model, test, limit: 1000);
        Assert.True(acc > 0.6, $"accuracy {acc:P1} after two epochs on 3000 images"); // chance is 10%
        var path = Path.Combine(Path.GetTempPath(), $"cls-{Guid.NewGuid():N}.safetensors");
        try
        {
            ClassifierTraining.Save(model, path);
            var loaded = ClassifierTraining.Load(path);
            Assert.Equal(acc, ClassifierTraining.Accuracy(loaded, test, limit: 1000), 9);
        }
        finally { File.Delete(path); }
    }
}
