using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// diffusers UNet2DConditionModel for SD 1.x / 2.x configs: predicts the noise (or v) for latents `sample` at
/// `timestep` given the text context. Submodules carry diffusers' names, so the diffusers checkpoint loads with
/// `StateDictLoader.LoadStrict(unet, ".../unet/diffusion_pytorch_model.safetensors")`.
public sealed class UNet2DConditionModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    // Field order = diffusers' registration order (down_blocks and up_blocks are created before mid_block).
    private readonly Conv2d conv_in;
    private readonly Timesteps time_proj;
    private readonly TimestepEmbedding time_embedding;
    private readonly ModuleList<UNetDownBlock> down_blocks;
    private readonly ModuleList<UNetUpBlock> up_blocks;
    private readonly UNetMidBlock2DCrossAttn mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public UNetConfig Config { get; }

    /// Debug hook: called with ("conv_in" | "time_proj" | "time_embedding" | "down_blocks.N" | "mid_block" |
    /// "up_blocks.N" | "conv_norm_out" | "conv_out", output) during forward, like a forward hook on that submodule
    /// (down blocks: the hidden state, not the skips). The callback runs inside forward's dispose scope, so the
    /// tensor (and anything created from it there) is disposed when forward returns: keep a copy with
    /// `t.clone().DetachFromDisposeScope()`.
    public Action<string, Tensor>? Trace { get; set; }

    /// How often the latent is halved; latent sides that are not a multiple of 2^this get explicit upsample sizes.
    public int UpsamplerCount { get; }

    public UNet2DConditionModel(UNetConfig config) : base(nameof(UNet2DConditionModel))
    {
        config.Validate();
        Config = config;
        int[] channels = config.BlockOutChannels;
        int blocks = channels.Length, groups = config.Groups, temb = config.TimeEmbedDim;
        int[] heads = config.AttentionHeads(), layers = config.LayersPerBlockList();
        int[] crossDims = config.CrossAttentionDims(), transformerLayers = config.TransformerLayers();

        conv_in = nn.Conv2d(config.InChannels, channels[0], config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2);
        time_proj = new Timesteps(config.TimestepInputDim, config.FlipSinToCos, config.FreqShift);
        time_embedding = new TimestepEmbedding(config.TimestepInputDim, temb);

        UNetBlockOptions Common(int i) => new()
        {
            InChannels = 0, OutChannels = channels[i], TembChannels = temb, Layers = layers[i], Groups = groups,
            Eps = config.NormEps, Dropout = config.Dropout, OutputScaleFactor = config.ResnetOutScaleFactor,
            DownsamplePadding = config.DownsamplePadding, CrossAttentionDim = crossDims[i], Heads = heads[i],
            TransformerLayers = transformerLayers[i], UseLinearProjection = config.UseLinearProjection,
            UpcastAttention = config.UpcastAttention,
        };

        var down = new UNetDownBlock[blocks];
        for (int i = 0; i < blocks; i++)
        {
            var o = Common(i) with { InChannels = i == 0 ? channels[0] : channels[i - 1], AddSampler = i < blocks - 1 };
            down[i] = config.DownBlockTypes[i] == UNetConfig.CrossAttnDownBlock ? new CrossAttnDownBlock2D(o) : new DownBlock2D(o);
        }
        down_blocks = nn.ModuleList(down);

        // Up blocks mirror the down blocks: per-block lists are reversed, resnets get one more layer.
        var up = new UNetUpBlock[blocks];
        for (int i = 0; i < blocks; i++)
        {
            int r = blocks - 1 - i;
            var o = Common(r) with
            {
                OutChannels = channels[r],
                PrevOutputChannels = i == 0 ? channels[blocks - 1] : channels[r + 1],
                InChannels = channels[Math.Max(r - 1, 0)],
                Layers = layers[r] + 1,
                AddSampler = i < blocks - 1,
            };
            up[i] = config.UpBlockTypes[i] == UNetConfig.CrossAttnUpBlock ? new CrossAttnUpBlock2D(o) : new UpBlock2D(o);
        }
        up_blocks = nn.ModuleList(up);
        UpsamplerCount = blocks - 1;

        mid_block = new UNetMidBlock2DCrossAttn(Common(blocks - 1) with
        {
            InChannels = channels[^1], Layers = 1, OutputScaleFactor = config.MidBlockScaleFactor,
        });

        conv_norm_out = Norms.Group(groups, channels[0], config.NormEps);
        conv_out = nn.Conv2d(channels[0], config.OutChannels, config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2);
        RegisterComponents();
    }

    /// Every transformer block's cross-attention (attn2) with its state-dict prefix, in diffusers' module order
    /// (down_blocks, up_blocks, mid_block), e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2".
    public IReadOnlyList<(string Prefix, Attention Attention)> CrossAttentions()
    {
        var all = new List<(string, Attention)>();
        for (int i = 0; i < down_blocks.Count; i++)
            all.AddRange(down_blocks[i].CrossAttentions().Select(a => ($"down_blocks.{i}.{a.Prefix}", a.Attention)));
        for (int i = 0; i < up_blocks.Count; i++)
            all.AddRange(up_blocks[i].CrossAttentions().Select(a => ($"up_blocks.{i}.{a.Prefix}", a.Attention)));
        all.AddRange(mid_block.CrossAttentions().Select(a => ($"mid_block.{a.Prefix}", a.Attention)));
        return all;
    }

    /// `sample` [B, in_channels, h, w]; `timestep` 0-dim or 1-dim (length 1 or B), int64 or float, broadcast to the
    /// batch like diffusers; `encoderHiddenStates` [B, S, cross_attention_dim]. Returns [B, out_channels, h, w] in
    /// `sample`'s dtype; the layers compute in their weights' dtype (bf16 weights with float32 latents: bf16 inside,
    /// float32 out).
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var outputDType = sample.dtype;
        var weights = conv_in.weight!.dtype;
        if (sample.dtype != weights) sample = sample.to(weights);
        if (encoderHiddenStates.dtype != weights) encoderHiddenStates = encoderHiddenStates.to(weights);
        long batch = sample.shape[0];
        var trace = Trace;

        long factor = 1L << UpsamplerCount;
        bool forceUpsampleSize = sample.shape[^2] % factor != 0 || sample.shape[^1] % factor != 0;

        if (Config.CenterInputSample) sample = sample.Times(2).Minus(1.0);

        var tProj = time_proj.call(BroadcastTimesteps(timestep, batch, sample.device)).to_type(sample.dtype);
        trace?.Invoke("time_proj", tProj);
        var emb = time_embedding.call(tProj);
        trace?.Invoke("time_embedding", emb);

        var h = conv_in.call(sample);
        trace?.Invoke("conv_in", h);
        var skips = new List<Tensor> { h };
        for (int i = 0; i < down_blocks.Count; i++)
        {
            var block = down_blocks[i];
            var outputs = Checkpointed(block, a =>
            {
                var (hidden, blockSkips) = block.forward(a[0], a[1], a[2]);
                return [hidden, .. blockSkips];
            }, h, emb, encoderHiddenStates);
            h = outputs[0];
            skips.AddRange(outputs.Skip(1));
            trace?.Invoke($"down_blocks.{i}", h);
        }

        h = Checkpointed(mid_block, a => [mid_block.call(a[0], a[1], a[2])], h, emb, encoderHiddenStates)[0];
        trace?.Invoke("mid_block", h);

        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            int n = block.SkipCount;
            var blockSkips = skips.GetRange(skips.Count - n, n);
            skips.RemoveRange(skips.Count - n, n);
            bool final = i == up_blocks.Count - 1;
            long[]? size = !final && forceUpsampleSize ? skips[^1].shape[2..] : null;
            h = Checkpointed(block, a => [block.forward(a[0], [.. a[3..]], a[1], a[2], size)], [h, emb, encoderHiddenStates, .. blockSkips])[0];
            trace?.Invoke($"up_blocks.{i}", h);
        }

        h = conv_norm_out.call(h);
        trace?.Invoke("conv_norm_out", h);
        h = OneDnnSafeConv.Forward(conv_out, nn.functional.silu(h));
        trace?.Invoke("conv_out", h);
        return (h.dtype == outputDType ? h : h.to(outputDType)).MoveToOuterDisposeScope();
    }

    /// Recompute each down, mid and up block's activations in backward instead of keeping them (training only; see
    /// Runtime/ActivationCheckpoint). Same gradients, less memory, one more forward per step.
    public bool GradientCheckpointing { get; set; }

    /// `run(activations)` through <see cref="ActivationCheckpoint"/> when checkpointing a training forward, else directly.
    private Tensor[] Checkpointed(nn.Module block, Func<Tensor[], Tensor[]> run, params Tensor[] activations)
    {
        if (!GradientCheckpointing || !torch.is_grad_enabled()) return run(activations);
        var trainable = block.parameters().Where(p => p.requires_grad).Cast<Tensor>();
        return ActivationCheckpoint.Run(run, [.. activations, .. trainable], activations.Length);
    }

    /// diffusers: a 0-dim timestep becomes [t]; then `expand(batch)` (so length 1 or batch).
    private static Tensor BroadcastTimesteps(Tensor timestep, long batch, Device device)
    {
        var t = timestep.dim() switch
        {
            0 => timestep.unsqueeze(0),
            1 => timestep,
            _ => throw new ArgumentException($"timestep must be 0-dim or 1-dim, got shape [{string.Join(", ", timestep.shape)}]", nameof(timestep)),
        };
        if (t.shape[0] != 1 && t.shape[0] != batch)
            throw new ArgumentException($"timestep has {t.shape[0]} entries, expected 1 or the batch size {batch}", nameof(timestep));
        return t.to(device).expand(batch);
    }
}
