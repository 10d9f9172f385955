using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ContinualDiffusion.Models;

/// diffusers GEGLU: proj = Linear(dim, 2*inner); hidden, gate = chunk(2); hidden * gelu(gate) (exact erf GELU).
public sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    private readonly Linear proj;

    public GEGLU(int dimIn, int dimOut) : base(nameof(GEGLU))
    {
        proj = nn.Linear(dimIn, dimOut * 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var halves = proj.call(input).chunk(2, dim: -1);
        return (halves[0] * nn.functional.gelu(halves[1])).MoveToOuterDisposeScope();
    }
}

/// diffusers FeedForward with activation "geglu": net = [GEGLU(dim, 4*dim), Dropout, Linear(4*dim, dim)]
/// (keys `ff.net.0.proj` and `ff.net.2`; index 1 is the parameterless dropout).
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<Module<Tensor, Tensor>> net;

    public FeedForward(int dim, int mult = 4, double dropout = 0.0) : base(nameof(FeedForward))
    {
        int inner = dim * mult;
        net = nn.ModuleList<Module<Tensor, Tensor>>(new GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var h = net[0].call(input);
        using var d = net[1].call(h);
        return net[2].call(d);
    }
}
