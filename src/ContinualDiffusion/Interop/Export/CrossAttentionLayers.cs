using ContinualDiffusion.Lora;
using ContinualDiffusion.Models;

namespace ContinualDiffusion.Interop.Export;

/// The layers C-LoRA adapts (every cross-attention's `to_k` and `to_v`), named and shaped from a UNet config alone, with
/// no weight allocated: the same names, in the same order, as `UNet2DConditionModel.CrossAttentions()` gives for a built
/// model (down blocks, up blocks, then the mid block; `to_k` before `to_v`), and the shapes of their weights
/// [inner, cross_attention_dim]. Exports check a run's adapters against this list instead of loading the base model.
public static class CrossAttentionLayers
{
    public static IReadOnlyList<(string Name, LayerShape Shape)> KeyValue(UNetConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        int blocks = config.BlockCount;
        int[] channels = config.BlockOutChannels, heads = config.AttentionHeads(), layers = config.LayersPerBlockList();
        int[] cross = config.CrossAttentionDims(), transformer = config.TransformerLayers();
        var all = new List<(string, LayerShape)>();

        void Add(string prefix, int attentions, int block)
        {
            // Transformer2D: inner = heads · (channels / heads), as TransformerOptions.InnerDim computes it.
            long inner = heads[block] * (long)(channels[block] / heads[block]);
            var shape = new LayerShape(inner, cross[block]);
            for (int a = 0; a < attentions; a++)
                for (int k = 0; k < transformer[block]; k++)
                {
                    string attn2 = $"{prefix}.attentions.{a}.transformer_blocks.{k}.attn2";
                    all.Add(($"{attn2}.to_k", shape));
                    all.Add(($"{attn2}.to_v", shape));
                }
        }

        for (int i = 0; i < blocks; i++)
            if (config.DownBlockTypes[i] == UNetConfig.CrossAttnDownBlock) Add($"down_blocks.{i}", layers[i], i);
        for (int i = 0; i < blocks; i++)
        {
            int mirrored = blocks - 1 - i; // up blocks mirror the down blocks, with one more layer each
            if (config.UpBlockTypes[i] == UNetConfig.CrossAttnUpBlock) Add($"up_blocks.{i}", layers[mirrored] + 1, mirrored);
        }
        Add("mid_block", 1, blocks - 1);
        return all;
    }

    /// The same as a name → shape map, for AdapterExpectation.
    public static Dictionary<string, LayerShape> KeyValueShapes(UNetConfig config) =>
        KeyValue(config).ToDictionary(l => l.Name, l => l.Shape, StringComparer.Ordinal);
}
