using ContinualDiffusion.Interop.SingleFile;
using TorchSharp.Modules;

namespace ContinualDiffusion.Interop.Import;

/// Which part of the pipeline a LoRA module changes.
public enum LoraComponent
{
    Unet,
    TextEncoder,
}

/// The layers a foreign LoRA may change: every Linear and Conv2d of the UNet and of the text encoder, by module path
/// (the diffusers / transformers state-dict names, e.g. `down_blocks.0.attentions.0.proj_in`,
/// `text_model.encoder.layers.0.self_attn.q_proj`) with its weight's shape. kohya's names are inverted against these
/// paths (KohyaNames: `.` → `_` cannot be undone by text alone). LoRAs made on original-LDM checkpoints name the UNet's
/// modules as the CompVis code does (`lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k`, `middle_block_1`,
/// `output_blocks_3_1`): those names are registered too, through the single-file key map run backwards
/// (LdmKeyMap.UnetLdmKey), so such files load like diffusers-named ones. Pure data: tests build it from name lists.
public sealed class LoraTargets
{
    private readonly Dictionary<LoraComponent, IReadOnlyDictionary<string, long[]>> _shapes;
    private readonly Dictionary<string, (LoraComponent, string)?> _kohya = new(StringComparer.Ordinal);

    public LoraTargets(IReadOnlyDictionary<string, long[]> unet, IReadOnlyDictionary<string, long[]> textEncoder)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(textEncoder);
        _shapes = new() { [LoraComponent.Unet] = unet, [LoraComponent.TextEncoder] = textEncoder };
        foreach (var (component, paths) in _shapes)
            foreach (var path in paths.Keys)
            {
                var name = KohyaName(component, path);
                // Two paths with one kohya name (none in SD): neither can be told apart, so neither is a target.
                _kohya[name] = _kohya.ContainsKey(name) ? null : (component, path);
            }
        foreach (var (name, path) in CompVisUnetNames(unet.Keys))
            _kohya[name] = _kohya.TryGetValue(name, out var other) && other != (LoraComponent.Unet, path) ? null : (LoraComponent.Unet, path);
    }

    /// The kohya name each UNet module path gets on an original-LDM checkpoint, where the mapping knows one. The UNet's
    /// layout (layers per block, which up blocks have attentions) is read off the paths, as the single-file writer does.
    private static IEnumerable<(string Name, string Path)> CompVisUnetNames(IEnumerable<string> paths)
    {
        var list = paths.ToList();
        var upWithAttention = list.Select(p => LdmKeyMap.Index(p, "up_blocks."))
            .Where(i => i is { } u && u.Tail.StartsWith("attentions.", StringComparison.Ordinal)).Select(i => i!.Value.Number).ToHashSet();
        var firstLevelResnets = list.Select(p => LdmKeyMap.Index(p, "down_blocks.0.resnets.")).Where(i => i is not null).Select(i => i!.Value.Number).ToList();
        if (firstLevelResnets.Count == 0) yield break;
        int layersPerBlock = firstLevelResnets.Max() + 1;
        foreach (var path in list)
        {
            if (LdmKeyMap.UnetLdmKey(path + ".weight", layersPerBlock, upWithAttention.Contains) is not { } ldm) continue;
            yield return (KohyaUnetPrefix + ldm[..^".weight".Length].Replace('.', '_'), path);
        }
    }

    /// kohya-ss/sd-scripts `networks/lora.py` LoRANetwork: `LORA_PREFIX_UNET = "lora_unet"`,
    /// `LORA_PREFIX_TEXT_ENCODER = "lora_te"`, `lora_name = (prefix + "." + name + "." + child_name).replace(".", "_")`.
    public const string KohyaUnetPrefix = "lora_unet_";
    public const string KohyaTextEncoderPrefix = "lora_te_";

    public static string KohyaName(LoraComponent component, string path) =>
        (component == LoraComponent.Unet ? KohyaUnetPrefix : KohyaTextEncoderPrefix) + path.Replace('.', '_');

    /// The weight shape of a module path, or null when the component has no such Linear/Conv2d.
    public long[]? Shape(LoraComponent component, string path) =>
        _shapes[component].TryGetValue(path, out var shape) ? shape : null;

    /// The module a kohya module name (`lora_unet_…` / `lora_te_…`, without suffix) stands for, or null.
    public (LoraComponent Component, string Path)? FromKohya(string name) =>
        _kohya.TryGetValue(name, out var target) ? target : null;

    /// Every Linear and Conv2d of the model's UNet and text encoder, by module path, with its weight shape.
    public static LoraTargets Of(Models.StableDiffusion model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = TorchSharp.torch.NewDisposeScope(); // any wrappers the module enumeration makes
        return new LoraTargets(
            Weights(model.Unet).ToDictionary(w => w.Key, w => w.Value.shape, StringComparer.Ordinal),
            Weights(model.TextEncoder).ToDictionary(w => w.Key, w => w.Value.shape, StringComparer.Ordinal));
    }

    /// The weight Parameter of every Linear and Conv2d of `module`, by module path: the modules' own tensors, so an
    /// in-place change changes the model.
    public static Dictionary<string, TorchSharp.torch.Tensor> Weights(TorchSharp.torch.nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var weights = new Dictionary<string, TorchSharp.torch.Tensor>(StringComparer.Ordinal);
        foreach (var (name, m) in module.named_modules())
        {
            var weight = m switch { Linear l => l.weight, Conv2d c => c.weight, _ => null };
            if (weight is not null && name.Length > 0) weights[name] = weight;
        }
        return weights;
    }
}
