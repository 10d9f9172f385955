using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPMLP: fc1 -> activation (config hidden_act) -> fc2.
public sealed class ClipMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly Func<Tensor, Tensor> _activation;

    public ClipMlp(ClipTextConfig config, Device? device = null) : base(nameof(ClipMlp))
    {
        fc1 = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: true, device: device);
        fc2 = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: true, device: device);
        _activation = Activation(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var a = _activation(h);
        return fc2.forward(a);
    }

    /// quick_gelu is what OpenAI's CLIP (SD 1.x) was trained with: x * sigmoid(1.702 x);
    /// gelu is the exact erf form (OpenCLIP ViT-H, SD 2.x).
    private static Func<Tensor, Tensor> Activation(string name) => name switch
    {
        "quick_gelu" => QuickGelu,
        "gelu" => x => nn.functional.gelu(x),
        _ => throw new ArgumentException($"unsupported hidden_act '{name}'", nameof(name)),
    };

    private static Tensor QuickGelu(Tensor x)
    {
        using var scaled = x.Times(1.702);
        using var gate = scaled.sigmoid();
        return x * gate;
    }
}
