using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// What CLIPTextModel returns.
/// `LastHiddenState`: (batch, tokens, hidden) after final_layer_norm — SD's encoder_hidden_states.
/// `PoolerOutput`: (batch, hidden), last_hidden_state at the pooled position (see ClipTextConfig.PoolsAtArgmaxId).
/// `HiddenStates`: when requested, num_hidden_layers + 1 tensors (batch, tokens, hidden): the embeddings output,
/// then each layer's output before the final LayerNorm.
public sealed class ClipTextOutput(Tensor lastHiddenState, Tensor poolerOutput, IReadOnlyList<Tensor>? hiddenStates) : IDisposable
{
    public Tensor LastHiddenState { get; } = lastHiddenState;
    public Tensor PoolerOutput { get; } = poolerOutput;
    public IReadOnlyList<Tensor>? HiddenStates { get; } = hiddenStates;

    public void Dispose()
    {
        LastHiddenState.Dispose();
        PoolerOutput.Dispose();
        if (HiddenStates is not null) foreach (var h in HiddenStates) h.Dispose();
    }
}
