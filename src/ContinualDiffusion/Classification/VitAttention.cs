using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ContinualDiffusion.Classification;

/// timm's ViT `Attention`: one fused `qkv` projection [3·dim, dim] (rows: queries, keys, values), multi-head
/// scaled dot-product attention over all tokens, and the output projection `proj`. Optional prefix keys and
/// values (prefix-tuning, as prompt methods use) are prepended to the keys and values only, so the output keeps
/// the input's token count.
public sealed class VitAttention : nn.Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> qkv; // key: blocks.N.attn.qkv
    private readonly Linear proj;       // key: blocks.N.attn.proj
    private readonly int _heads;
    private readonly int _dim;

    public VitAttention(VitConfig config) : base(nameof(VitAttention))
    {
        _dim = config.EmbedDim;
        _heads = config.NumHeads;
        qkv = nn.Linear(_dim, 3 * _dim, hasBias: true);
        proj = nn.Linear(_dim, _dim, hasBias: true);
        RegisterComponents();
    }

    /// The fused projection (a Linear, or the adapter that replaced it).
    public Module<Tensor, Tensor> Qkv => qkv;

    /// Swaps the fused projection for `replacement` (an adapter wrapping it), registered under the same name. The
    /// previous module is not disposed: the replacement owns it.
    public void ReplaceQkv(Module<Tensor, Tensor> replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        qkv = replacement;
        register_module("qkv", null!); // TorchSharp removes the entry when given null and refuses to overwrite one
        register_module("qkv", replacement);
    }

    public override Tensor forward(Tensor x) => Forward(x, null, null);

    /// x [B, N, dim]; prefixKeys and prefixValues [B, P, dim] or both null.
    public Tensor Forward(Tensor x, Tensor? prefixKeys, Tensor? prefixValues)
    {
        if ((prefixKeys is null) != (prefixValues is null)) throw new ArgumentException("prefix keys and values come together");
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], n = x.shape[1];
        var projected = qkv.call(x).view(b, n, 3, _heads, _dim / _heads).permute(2, 0, 3, 1, 4); // [3, B, H, N, dh]
        var q = projected[0];
        var k = projected[1];
        var v = projected[2];
        if (prefixKeys is not null)
        {
            k = torch.cat([Heads(prefixKeys, b), k], 2);
            v = torch.cat([Heads(prefixValues!, b), v], 2);
        }
        var attended = nn.functional.scaled_dot_product_attention(q, k, v);
        var merged = attended.transpose(1, 2).reshape(b, n, _dim);
        return proj.call(merged).MoveToOuterDisposeScope();
    }

    /// [B, P, dim] → [B, H, P, dh]
    private Tensor Heads(Tensor t, long b) => t.view(b, t.shape[1], _heads, _dim / _heads).transpose(1, 2);
}
