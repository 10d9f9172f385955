using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPTextTransformer (`text_model`): embeddings -> encoder -> final_layer_norm, plus pooling.
public sealed class ClipTextTransformer : nn.Module
{
    private readonly ClipTextEmbeddings embeddings;
    private readonly ClipEncoder encoder;
    private readonly LayerNorm final_layer_norm;
    private readonly ClipTextConfig _config;

    public ClipTextTransformer(ClipTextConfig config, Device? device = null) : base(nameof(ClipTextTransformer))
    {
        _config = config;
        embeddings = new ClipTextEmbeddings(config, device);
        encoder = new ClipEncoder(config, device);
        final_layer_norm = nn.LayerNorm(config.HiddenSize, eps: config.LayerNormEps, device: device);
        RegisterComponents();
    }

    public ClipTextEmbeddings Embeddings => embeddings;

    public ClipTextOutput Forward(Tensor inputIds, IReadOnlyDictionary<long, Tensor>? tokenOverrides, bool outputHiddenStates)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input ids must be (batch, tokens), got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        using var scope = torch.NewDisposeScope();
        var ids = inputIds.to_type(ScalarType.Int64);
        var h0 = embeddings.Forward(ids, tokenOverrides);
        var hidden = outputHiddenStates ? new List<Tensor> { h0 } : null;
        var last = encoder.Forward(h0, hidden);
        var normed = final_layer_norm.forward(last);
        var pooled = Pool(normed, ids);
        return new ClipTextOutput(
            normed.MoveToOuterDisposeScope(),
            pooled.MoveToOuterDisposeScope(),
            hidden?.Select(h => h.MoveToOuterDisposeScope()).ToList());
    }

    /// transformers 4.40: with the legacy eos_token_id == 2 the pooled token is argmax(input_ids) (the eos
    /// token, having the highest id — unless concept tokens with higher ids are present, which transformers
    /// then pools at too; SD does not use the pooled output). Otherwise the first position equal to eos_token_id.
    private Tensor Pool(Tensor normed, Tensor ids)
    {
        var position = _config.PoolsAtArgmaxId
            ? ids.argmax(-1)
            : ids.EqualTo(_config.EosTokenId).to_type(ScalarType.Int32).argmax(-1);
        var rows = OwnedScalars.Arange(0, ids.shape[0], ScalarType.Int64, ids.device);
        return normed[TensorIndex.Tensor(rows), TensorIndex.Tensor(position)];
    }
}
