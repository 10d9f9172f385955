using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Foundation;

public class TorchNativeTests
{
    [Fact]
    public void Conv2d_forward_and_backward_run_through_the_native_library()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(0);
        using var conv = nn.Conv2d(3, 4, 3, padding: 1);
        var x = torch.randn(2, 3, 8, 8, requires_grad: true);
        var y = conv.forward(x);
        Assert.Equal(new long[] { 2, 4, 8, 8 }, y.shape);
        y.Squared().sum().backward();
        Assert.NotNull(x.grad);
        Assert.True(x.grad!.abs().sum().item<float>() > 0f);
        Assert.True(conv.weight!.grad!.abs().sum().item<float>() > 0f);
    }

    [Fact]
    public void Scaled_dot_product_attention_matches_the_explicit_softmax_formula()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(1);
        var q = torch.randn(1, 2, 5, 8); var k = torch.randn(1, 2, 7, 8); var v = torch.randn(1, 2, 7, 8);
        var fused = nn.functional.scaled_dot_product_attention(q, k, v);
        var manual = torch.softmax(q.matmul(k.transpose(-1, -2)).DividedBy(Math.Sqrt(8)), -1).matmul(v);
        Assert.True((fused - manual).abs().max().item<float>() < 1e-5f);
    }
}
