using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// timm's ViT `Mlp`: fc1 → GELU (exact erf form) → fc2.
public sealed class VitMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1; // key: blocks.N.mlp.fc1
    private readonly Linear fc2; // key: blocks.N.mlp.fc2

    public VitMlp(VitConfig config) : base(nameof(VitMlp))
    {
        fc1 = nn.Linear(config.EmbedDim, config.MlpDim, hasBias: true);
        fc2 = nn.Linear(config.MlpDim, config.EmbedDim, hasBias: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var g = nn.functional.gelu(h);
        return fc2.forward(g);
    }
}
