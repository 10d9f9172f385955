using ContinualDiffusion.Runtime;
using ContinualDiffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Training;

public class AdamWTests
{
    private static Tensor Loss(Tensor p) => (p * OwnedScalars.Arange(1, 7, ScalarType.Float32).reshape(2, 3)).sin().sum().Plus(p.Squared().sum());

    [Fact]
    public void Updates_equal_torch_optim_AdamW_over_several_steps()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(5);
        var init = torch.randn(2, 3);
        var mine = init.clone().requires_grad_(true);
        var theirs = new TorchSharp.Modules.Parameter(init.clone());
        var opt = new AdamW([new AdamW.Group("a", [mine], 0.05, 0.01)]);
        var reference = torch.optim.AdamW([theirs], lr: 0.05, weight_decay: 0.01);
        for (int i = 0; i < 6; i++)
        {
            opt.ZeroGrad(); Loss(mine).backward(); opt.Step();
            reference.zero_grad(); Loss(theirs).backward(); reference.step();
        }
        Assert.True((mine - theirs).abs().max().item<float>() < 1e-6f);
    }

    [Fact]
    public void Restored_state_continues_exactly_like_the_uninterrupted_run()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(6);
        var init = torch.randn(2, 3);
        var a = init.clone().requires_grad_(true);
        var optA = new AdamW([new AdamW.Group("g", [a], 0.1)]);
        for (int i = 0; i < 3; i++) { optA.ZeroGrad(); Loss(a).backward(); optA.Step(); }
        var saved = optA.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var b = a.detach().clone().requires_grad_(true);
        var optB = new AdamW([new AdamW.Group("g", [b], 0.1)]);
        optB.LoadStateTensors(saved, "checkpoint");
        for (int i = 0; i < 3; i++)
        {
            optA.ZeroGrad(); Loss(a).backward(); optA.Step();
            optB.ZeroGrad(); Loss(b).backward(); optB.Step();
        }
        Assert.Equal(6, optB.StepCount);
        Assert.True(a.equal(b).all().item<bool>());
    }
}
