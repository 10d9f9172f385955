using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPTextEmbeddings: token embedding + learned absolute position embedding.
/// transformers also has a `position_ids` buffer (arange(max_positions)); since 4.31 it is non-persistent and
/// absent from new checkpoints (the sd-tiny fixture has none), older ones still carry it. It is not a buffer
/// here: positions are computed in forward, and `ClipTextModel.IsIgnorableCheckpointKey` lets the loader skip
/// the key when a checkpoint has it.
public sealed class ClipTextEmbeddings : nn.Module
{
    private readonly Embedding token_embedding;
    private readonly Embedding position_embedding;
    private readonly int _maxPositions;

    public ClipTextEmbeddings(ClipTextConfig config, Device? device = null) : base(nameof(ClipTextEmbeddings))
    {
        token_embedding = nn.Embedding(config.VocabSize, config.HiddenSize, device: device);
        position_embedding = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize, device: device);
        _maxPositions = config.MaxPositionEmbeddings;
        RegisterComponents();
    }

    /// The (vocab, hidden) token embedding matrix.
    /// The module's own registered parameter, owned by the module (TorchSharp's `Embedding.weight` getter would
    /// make a new, unowned wrapper on every call: Runtime/TensorOwnership).
    public Parameter TokenWeight => token_embedding.get_parameter("weight") ?? throw new InvalidOperationException("token_embedding has no weight");

    /// Swaps in a new token embedding matrix (same hidden size), keeping the parameter name.
    /// The replaced parameter is disposed; the module owns `weight` from then on.
    internal void ReplaceTokenWeight(Parameter weight)
    {
        var previous = TokenWeight;
        token_embedding.weight = weight;
        previous.Dispose();
    }

    /// inputIds: int64 (batch, tokens) -> (batch, tokens, hidden).
    /// `tokenOverrides` replaces the embedding of the given ids by the given (hidden) or (1, hidden) rows:
    /// positions holding such an id take the override tensor (so gradients reach it) and never read, hence
    /// never send gradient to, the matrix row. Override ids may lie beyond the matrix.
    public Tensor Forward(Tensor inputIds, IReadOnlyDictionary<long, Tensor>? tokenOverrides)
    {
        long tokens = inputIds.shape[^1];
        if (tokens > _maxPositions)
            throw new ArgumentException($"input has {tokens} tokens, the text encoder has {_maxPositions} positions", nameof(inputIds));

        using var scope = torch.NewDisposeScope();
        var tokenEmbeds = tokenOverrides is { Count: > 0 }
            ? EmbedWithOverrides(inputIds, tokenOverrides)
            : token_embedding.forward(inputIds);
        var positionIds = OwnedScalars.Arange(0, tokens, ScalarType.Int64, inputIds.device);
        var positionEmbeds = position_embedding.forward(positionIds);
        return tokenEmbeds.Plus(positionEmbeds).MoveToOuterDisposeScope();
    }

    private Tensor EmbedWithOverrides(Tensor inputIds, IReadOnlyDictionary<long, Tensor> overrides)
    {
        long hidden = TokenWeight.shape[1];
        var masks = overrides.Keys.ToDictionary(id => id, id => inputIds.EqualTo(id).unsqueeze(-1));
        var anyOverride = masks.Values.Aggregate((a, b) => a.logical_or(b)).squeeze(-1);
        // Overridden positions look up row 0 instead, so an id outside the matrix is fine; the value is discarded.
        var lookupIds = inputIds.MaskedFill(anyOverride, 0);
        var embeds = token_embedding.forward(lookupIds);
        foreach (var (id, row) in overrides)
        {
            if (row.numel() != hidden)
                throw new ArgumentException($"override for token {id} has shape [{string.Join(", ", row.shape)}], expected [{hidden}] or [1, {hidden}]", nameof(overrides));
            var value = row.reshape(1, 1, hidden).to(embeds.dtype);
            embeds = torch.where(masks[id], value, embeds);
        }
        return embeds;
    }
}
