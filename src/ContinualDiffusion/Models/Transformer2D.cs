using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ContinualDiffusion.Models;

/// Settings of a diffusers Transformer2DModel with continuous (latent map) input.
public sealed record TransformerOptions(int InChannels, int Heads, int CrossAttentionDim, int Groups)
{
    public int Layers { get; init; } = 1;
    /// SD 2.x: proj_in/proj_out are Linear layers applied to tokens; SD 1.x: 1x1 convs applied to the map.
    public bool UseLinearProjection { get; init; }
    public bool UpcastAttention { get; init; }
    public double Dropout { get; init; }

    /// diffusers passes `in_channels // heads` as the head width, so the inner width is heads * that.
    public int DimHead => InChannels / Heads;
    public int InnerDim => Heads * DimHead;
}

/// diffusers BasicTransformerBlock (layer_norm variant, self- then cross-attention, GEGLU feed-forward):
/// x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)).
public sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn1;
    private readonly LayerNorm norm2;
    private readonly Attention attn2;
    private readonly LayerNorm norm3;
    private readonly FeedForward ff;

    public BasicTransformerBlock(int dim, int heads, int dimHead, int crossAttentionDim, bool upcastAttention, double dropout)
        : base(nameof(BasicTransformerBlock))
    {
        norm1 = nn.LayerNorm(dim, eps: 1e-5);
        attn1 = new Attention(new AttentionOptions(dim, heads, dimHead) { Upcast = upcastAttention, Dropout = dropout });
        norm2 = nn.LayerNorm(dim, eps: 1e-5);
        attn2 = new Attention(new AttentionOptions(dim, heads, dimHead) { CrossAttentionDim = crossAttentionDim, Upcast = upcastAttention, Dropout = dropout });
        norm3 = nn.LayerNorm(dim, eps: 1e-5);
        ff = new FeedForward(dim, dropout: dropout);
        RegisterComponents();
    }

    /// The self-attention (context = the tokens themselves).
    public Attention Attn1 => attn1;

    /// The cross-attention over the text context: the layer C-LoRA adapts (its to_k / to_v).
    public Attention Attn2 => attn2;

    public override Tensor forward(Tensor hidden, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        var h = attn1.call(norm1.call(hidden), null).Plus(hidden);
        h = attn2.call(norm2.call(h), context).Plus(h);
        h = ff.call(norm3.call(h)).Plus(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// diffusers Transformer2DModel for latent maps: GroupNorm(eps 1e-6) -> proj_in -> tokens -> transformer blocks
/// -> proj_out -> map + residual. proj_in is a 1x1 conv applied before flattening (SD 1.x) or a Linear applied
/// after it (use_linear_projection, SD 2.x); the checkpoint shapes differ accordingly ([C, C, 1, 1] vs [C, C]).
public sealed class Transformer2DModel : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly Module<Tensor, Tensor> proj_in;
    private readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    private readonly Module<Tensor, Tensor> proj_out;

    public TransformerOptions Options { get; }

    public Transformer2DModel(TransformerOptions options) : base(nameof(Transformer2DModel))
    {
        Options = options;
        int c = options.InChannels, inner = options.InnerDim;
        norm = Norms.Group(options.Groups, c, 1e-6);
        proj_in = options.UseLinearProjection ? nn.Linear(c, inner) : nn.Conv2d(c, inner, 1);
        transformer_blocks = nn.ModuleList(Enumerable.Range(0, options.Layers)
            .Select(_ => new BasicTransformerBlock(inner, options.Heads, options.DimHead, options.CrossAttentionDim, options.UpcastAttention, options.Dropout))
            .ToArray());
        proj_out = options.UseLinearProjection ? nn.Linear(inner, c) : nn.Conv2d(inner, c, 1);
        RegisterComponents();
    }

    public IReadOnlyList<BasicTransformerBlock> TransformerBlocks => [.. transformer_blocks];

    /// `hidden`: [B, C, H, W]; `context`: [B, S, cross_attention_dim].
    public override Tensor forward(Tensor hidden, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        long b = hidden.shape[0], h = hidden.shape[2], w = hidden.shape[3];
        int inner = Options.InnerDim;
        var x = norm.call(hidden);
        if (Options.UseLinearProjection)
            x = proj_in.call(x.permute(0, 2, 3, 1).reshape(b, h * w, -1));
        else
            x = proj_in.call(x).permute(0, 2, 3, 1).reshape(b, h * w, inner);

        foreach (var block in transformer_blocks) x = block.call(x, context);

        if (Options.UseLinearProjection)
            x = proj_out.call(x).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous();
        else
            x = proj_out.call(x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous());
        return x.Plus(hidden).MoveToOuterDisposeScope();
    }
}
