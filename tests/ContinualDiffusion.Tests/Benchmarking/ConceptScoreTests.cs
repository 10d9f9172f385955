using ContinualDiffusion.Benchmarking;
using TorchSharp;

namespace ContinualDiffusion.Tests.Benchmarking;

public class ConceptScoreTests
{
    [Fact]
    public void Other_classes_lists_the_wrong_classes_with_at_least_a_tenth_largest_first()
    {
        // 50 samples of a coat (4): 20 coats, 15 pullovers (2), 10 shirts (6), 4 T-shirts (0), 1 bag (8).
        var predicted = new Dictionary<int, int> { [4] = 20, [2] = 15, [6] = 10, [0] = 4, [8] = 1 };
        using var score = new ConceptScore(0.4, 0, 0, torch.zeros(1), predicted);
        Assert.Equal("drawn as pullover 30%, shirt 20%", score.OtherClasses([4]).Replace(" %", "%"));
        Assert.Equal("drawn as shirt 20%", score.OtherClasses([4, 2]).Replace(" %", "%"));
        Assert.Equal("", score.OtherClasses([4, 2, 6]));
    }
}
