using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// A Vision Transformer with timm's parameter names (`patch_embed.proj`, `cls_token`, `pos_embed`,
/// `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `head`): the backbone every
/// classification method shares. <see cref="Features"/> is the class token's output after the final LayerNorm;
/// `head` is the pretraining classifier (the continual methods use their own growing head instead).
///
/// Prompt methods reach inside through two hooks of <see cref="Features"/>: tokens prepended to the sequence after
/// the position embeddings (prompt tuning) and per-block prefix keys and values (prefix tuning).
public sealed class VisionTransformer : nn.Module<Tensor, Tensor>
{
    private readonly VitPatchEmbed patch_embed;
    private readonly Parameter cls_token;           // [1, 1, dim]
    private readonly Parameter pos_embed;           // [1, patches + 1, dim]
    private readonly ModuleList<VitBlock> blocks;
    private readonly LayerNorm norm;
    private readonly Linear head;                   // [pretraining classes, dim]

    public VitConfig Config { get; }
    public int PretrainingClasses { get; }

    /// Built with `pretrainingClasses` outputs in `head`; weights are random (ViT's N(0, 0.02) for the class token
    /// and position embeddings, torch's defaults for the layers) until a checkpoint is loaded.
    public static VisionTransformer Create(VitConfig config, int pretrainingClasses, Generator? generator = null) =>
        TensorOwnership.Build(() => new VisionTransformer(config, pretrainingClasses, generator));

    private VisionTransformer(VitConfig config, int pretrainingClasses, Generator? generator) : base(nameof(VisionTransformer))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("ViT config");
        if (pretrainingClasses < 1) throw new ArgumentOutOfRangeException(nameof(pretrainingClasses), "the pretraining head needs at least one class");
        Config = config;
        PretrainingClasses = pretrainingClasses;
        patch_embed = new VitPatchEmbed(config);
        cls_token = new Parameter(torch.randn([1, 1, config.EmbedDim], generator: generator).Times(0.02));
        pos_embed = new Parameter(torch.randn([1, config.NumTokens, config.EmbedDim], generator: generator).Times(0.02));
        blocks = nn.ModuleList([.. Enumerable.Range(0, config.Depth).Select(_ => new VitBlock(config))]);
        norm = nn.LayerNorm(config.EmbedDim, eps: config.LayerNormEps);
        head = nn.Linear(config.EmbedDim, pretrainingClasses, hasBias: true);
        RegisterComponents();
    }

    public IReadOnlyList<VitBlock> Blocks => [.. blocks];

    /// Logits of the pretraining head, [B, pretraining classes].
    public override Tensor forward(Tensor images)
    {
        using var features = Features(images);
        return head.forward(features);
    }

    /// The class token's output after the final LayerNorm, [B, dim]. `prependTokens` [B, P, dim] go between the class
    /// token and the patches after the position embeddings; `prefixes(block)` gives that block's prefix keys and
    /// values [B, P, dim] or null.
    public Tensor Features(Tensor images, Tensor? prependTokens = null, Func<int, (Tensor Keys, Tensor Values)?>? prefixes = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Config.InChannels || images.shape[2] != Config.ImageSize || images.shape[3] != Config.ImageSize)
            throw new ArgumentException($"images must be [B, {Config.InChannels}, {Config.ImageSize}, {Config.ImageSize}], got [{string.Join(", ", images.shape)}]", nameof(images));
        using var scope = torch.NewDisposeScope();
        long b = images.shape[0];
        var patches = patch_embed.call(images);
        var x = torch.cat([cls_token.expand(b, -1, -1), patches], 1).Plus(pos_embed);
        if (prependTokens is not null)
            x = torch.cat([x.narrow(1, 0, 1), prependTokens, x.narrow(1, 1, x.shape[1] - 1)], 1);
        for (int i = 0; i < blocks.Count; i++)
        {
            var prefix = prefixes?.Invoke(i);
            x = prefix is { } p ? blocks[i].Forward(x, p.Keys, p.Values) : blocks[i].call(x);
        }
        return norm.call(x.select(1, 0)).MoveToOuterDisposeScope();
    }

    /// Logits of the pretraining head for features from <see cref="Features"/>.
    public Tensor PretrainingLogits(Tensor features) => head.call(features);
}
