using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPEncoder: the stack of encoder layers (`encoder.layers.N`).
public sealed class ClipEncoder : nn.Module
{
    private readonly ModuleList<ClipEncoderLayer> layers;

    public ClipEncoder(ClipTextConfig config, Device? device = null) : base(nameof(ClipEncoder))
    {
        layers = new ModuleList<ClipEncoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(new ClipEncoderLayer(config, device));
        RegisterComponents();
    }

    /// Runs all layers; when `hiddenStates` is given each layer's output is appended to it (the caller has
    /// already added the embeddings output), as transformers' output_hidden_states does. Intermediates are
    /// left to the caller's dispose scope: they are the autograd graph when training through the encoder.
    public Tensor Forward(Tensor embeddings, List<Tensor>? hiddenStates)
    {
        Tensor h = embeddings;
        foreach (var layer in layers)
        {
            h = layer.forward(h);
            hiddenStates?.Add(h);
        }
        return h;
    }
}
