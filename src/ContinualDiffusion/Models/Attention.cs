using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ContinualDiffusion.Models;

/// Settings of one diffusers `Attention`. The UNet's transformer blocks use the defaults (no q/k/v bias,
/// to_out bias); the VAE mid block sets Bias, GroupNormGroups and ResidualConnection.
public sealed record AttentionOptions(int QueryDim, int Heads, int DimHead)
{
    /// Width of the context for cross-attention (null: self-attention, context width = QueryDim).
    public int? CrossAttentionDim { get; init; }
    public bool Bias { get; init; }
    public bool OutBias { get; init; } = true;
    /// Compute attention in float32 even when the model runs in half precision (SD 2.1's `upcast_attention`).
    public bool Upcast { get; init; }
    /// When set, a GroupNorm over the channels is applied to the input first (VAE mid-block attention).
    public int? GroupNormGroups { get; init; }
    public double NormEps { get; init; } = 1e-5;
    public bool ResidualConnection { get; init; }
    public double RescaleOutputFactor { get; init; } = 1.0;
    public double Dropout { get; init; }

    public int InnerDim => Heads * DimHead;
    public int ContextDim => CrossAttentionDim ?? QueryDim;
}

/// diffusers `Attention` with its default processor: q = to_q(x), k/v = to_k/to_v(context ?? x), multi-head
/// softmax(q k^T / sqrt(dim_head)) v, then to_out.0 (+ dropout to_out.1). Accepts [B, L, C] tokens or, for the
/// VAE variant, [B, C, H, W] maps (flattened to tokens, optional group_norm, residual added back).
///
/// to_q/to_k/to_v are swappable (`ReplaceProjection`) so LoRA adapters can wrap them; the replacement is registered
/// under the same name, so an adapter exposing `weight` keeps the checkpoint key `...to_k.weight`.
public sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly GroupNorm? group_norm;
    private Module<Tensor, Tensor> to_q;
    private Module<Tensor, Tensor> to_k;
    private Module<Tensor, Tensor> to_v;
    private readonly ModuleList<Module<Tensor, Tensor>> to_out;

    public AttentionOptions Options { get; }

    public Attention(AttentionOptions options) : base(nameof(Attention))
    {
        if (options.Heads <= 0 || options.DimHead <= 0) throw new ArgumentException($"attention needs positive heads and head width, got {options.Heads} x {options.DimHead}", nameof(options));
        Options = options;
        if (options.GroupNormGroups is int groups) group_norm = Norms.Group(groups, options.QueryDim, options.NormEps);
        to_q = nn.Linear(options.QueryDim, options.InnerDim, hasBias: options.Bias);
        to_k = nn.Linear(options.ContextDim, options.InnerDim, hasBias: options.Bias);
        to_v = nn.Linear(options.ContextDim, options.InnerDim, hasBias: options.Bias);
        to_out = nn.ModuleList<Module<Tensor, Tensor>>(
            nn.Linear(options.InnerDim, options.QueryDim, hasBias: options.OutBias),
            nn.Dropout(options.Dropout));
        RegisterComponents();
    }

    public Module<Tensor, Tensor> ToQ => to_q;
    public Module<Tensor, Tensor> ToK => to_k;
    public Module<Tensor, Tensor> ToV => to_v;

    /// Swaps one of the input projections ("to_q", "to_k" or "to_v") and registers the replacement under the same
    /// name. The previous module is not disposed: the caller owns it (an adapter typically wraps it).
    public void ReplaceProjection(string name, Module<Tensor, Tensor> replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        switch (name)
        {
            case "to_q": to_q = replacement; break;
            case "to_k": to_k = replacement; break;
            case "to_v": to_v = replacement; break;
            default: throw new ArgumentException($"unknown attention projection '{name}' (expected to_q, to_k or to_v)", nameof(name));
        }
        // TorchSharp's register_module removes the entry when given null, and refuses to overwrite an existing one.
        register_module(name, null!);
        register_module(name, replacement);
    }

    /// `hidden`: [B, L, QueryDim] or [B, QueryDim, H, W]; `context`: [B, S, ContextDim] or null for self-attention.
    public override Tensor forward(Tensor hidden, Tensor? context)
    {
        using var scope = torch.NewDisposeScope();
        var residual = hidden;
        bool spatial = hidden.dim() == 4;
        long b = hidden.shape[0];
        var x = spatial ? hidden.flatten(2).transpose(1, 2) : hidden;
        if (group_norm is not null) x = group_norm.call(x.transpose(1, 2)).transpose(1, 2);

        var source = context ?? x;
        var q = SplitHeads(to_q.call(x), b);
        var k = SplitHeads(to_k.call(source), b);
        var v = SplitHeads(to_v.call(source), b);

        var dtype = q.dtype;
        // diffusers upcasts the score computation when asked; in float32 this is a no-op.
        if (Options.Upcast && dtype != ScalarType.Float32)
        {
            q = q.to_type(ScalarType.Float32); k = k.to_type(ScalarType.Float32); v = v.to_type(ScalarType.Float32);
        }
        var attended = nn.functional.scaled_dot_product_attention(q, k, v);
        var merged = attended.transpose(1, 2).reshape(b, -1, Options.InnerDim).to_type(dtype);

        var output = to_out[1].call(to_out[0].call(merged));
        if (spatial) output = output.transpose(-1, -2).reshape(hidden.shape);
        if (Options.ResidualConnection) output = output.Plus(residual);
        if (Options.RescaleOutputFactor != 1.0) output = output.DividedBy(Options.RescaleOutputFactor);
        return output.MoveToOuterDisposeScope();
    }

    /// [B, L, heads*dim_head] -> [B, heads, L, dim_head]
    private Tensor SplitHeads(Tensor t, long batch) => t.view(batch, -1, Options.Heads, Options.DimHead).transpose(1, 2);
}
