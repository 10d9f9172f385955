using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPAttention for the text tower: multi-head self-attention with biased q/k/v/out projections,
/// scale head_dim^-0.5 and a causal mask (each token sees itself and the tokens before it; padding after eos
/// is computed like any other position, as in transformers when no attention_mask is passed).
public sealed class ClipAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear q_proj;
    private readonly Linear k_proj;
    private readonly Linear v_proj;
    private readonly Linear out_proj;
    private readonly int _heads;

    public ClipAttention(ClipTextConfig config, Device? device = null) : base(nameof(ClipAttention))
    {
        int d = config.HiddenSize;
        _heads = config.NumAttentionHeads;
        q_proj = nn.Linear(d, d, hasBias: true, device: device);
        k_proj = nn.Linear(d, d, hasBias: true, device: device);
        v_proj = nn.Linear(d, d, hasBias: true, device: device);
        out_proj = nn.Linear(d, d, hasBias: true, device: device);
        RegisterComponents();
    }

    /// x: (batch, tokens, hidden) -> (batch, tokens, hidden).
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        using var q = SplitHeads(q_proj.forward(x), b, n);
        using var k = SplitHeads(k_proj.forward(x), b, n);
        using var v = SplitHeads(v_proj.forward(x), b, n);
        using var attended = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        using var merged = attended.transpose(1, 2).reshape(b, n, d);
        return out_proj.forward(merged);
    }

    /// (b, n, heads*dh) -> (b, heads, n, dh)
    private Tensor SplitHeads(Tensor projected, long b, long n)
    {
        using (projected)
            return projected.view(b, n, _heads, -1).transpose(1, 2);
    }
}
