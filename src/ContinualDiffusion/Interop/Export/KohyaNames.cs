namespace ContinualDiffusion.Interop.Export;

/// kohya-ss LoRA module names for the UNet (sd-scripts `networks/lora.py`, `LoRANetwork.create_modules`:
/// `lora_name = prefix + "." + name + "." + child_name; lora_name = lora_name.replace(".", "_")` with
/// `LORA_PREFIX_UNET = "lora_unet"`): `lora_unet_` + the diffusers module path with every `.` replaced by `_`, e.g.
/// `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k`. The mapping cannot be inverted by text
/// alone (module names contain `_` themselves), so it is inverted, as kohya's loaders do, against the module paths
/// the model has.
public static class KohyaNames
{
    public const string UnetPrefix = "lora_unet_";
    public const string DownSuffix = ".lora_down.weight";
    public const string UpSuffix = ".lora_up.weight";
    public const string AlphaSuffix = ".alpha";

    public static string ModuleName(string modulePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modulePath);
        return UnetPrefix + modulePath.Replace('.', '_');
    }

    /// kohya module name → module path for every path of a model. Two paths that would get one kohya name are refused
    /// (no SD UNet has such a pair; this guards the assumption).
    public static Dictionary<string, string> Inverse(IEnumerable<string> modulePaths)
    {
        var inverse = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in modulePaths)
        {
            var name = ModuleName(path);
            if (inverse.TryGetValue(name, out var other) && other != path)
                throw new InvalidOperationException($"module paths '{other}' and '{path}' both become the kohya name '{name}'");
            inverse[name] = path;
        }
        return inverse;
    }

    /// The module path of a kohya module name, or null when the model has no such module.
    public static string? ModulePath(string kohyaName, IReadOnlyDictionary<string, string> inverse) =>
        inverse.TryGetValue(kohyaName, out var path) ? path : null;
}
