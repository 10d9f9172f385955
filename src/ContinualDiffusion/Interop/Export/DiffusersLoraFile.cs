using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// A diffusers LoRA file, `pytorch_lora_weights.safetensors`, as `StableDiffusionLoraLoaderMixin.save_lora_weights`
/// writes it in `examples/dreambooth/train_dreambooth_lora.py` (`convert_state_dict_to_diffusers` of the PEFT state
/// dict, `utils/state_dict_utils.py` PEFT_TO_DIFFUSERS: `to_k.lora_A` → `to_k.lora.down`; `loaders/lora_pipeline.py`
/// prefixes `unet.`): `unet.<module path>.lora.down.weight` [R, in] and `unet.<module path>.lora.up.weight` [out, R].
/// No alpha keys: diffusers then uses lora_alpha = r, a scale of 1, and the delta is exactly up·down (any other scale
/// would be folded into up).
public static class DiffusersLoraFile
{
    public const string FileName = "pytorch_lora_weights.safetensors";
    public const string UnetPrefix = "unet.";
    public const string DownSuffix = ".lora.down.weight";
    public const string UpSuffix = ".lora.up.weight";

    /// The key form: `unet.<module>` + down / up suffix.
    public static readonly LoraKeyForm Keys = new(UnetPrefix, DownSuffix, UpSuffix);

    public static void Save(string path, StackedLora lora) => Keys.Save(path, lora);

    /// Reads the file back as delta = up·down per module path (float64, owned by the caller).
    public static Dictionary<string, Tensor> ReadDeltas(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return Keys.ReadDeltas(file);
    }
}

/// One LoRA file's key form, `<prefix><module><down suffix>` and `<prefix><module><up suffix>`: the diffusers and PEFT
/// writers share writing the pairs and reading them back (the writers' tests and round trips).
public sealed record LoraKeyForm(string Prefix, string DownSuffix, string UpSuffix)
{
    public string Down(string module) => Prefix + module + DownSuffix;
    public string Up(string module) => Prefix + module + UpSuffix;

    /// Writes every layer's down and up factor under this form.
    public void Save(string path, StackedLora lora)
    {
        ArgumentNullException.ThrowIfNull(lora);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var layer in lora.Layers)
        {
            tensors[Down(layer.Name)] = layer.Down;
            tensors[Up(layer.Name)] = layer.Up;
        }
        SafeTensorsFile.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// up·down per module (float64, owned by the caller); a key of another form is an error naming it.
    public Dictionary<string, Tensor> ReadDeltas(SafeTensorsFile file)
    {
        var modules = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var key in file.Tensors.Keys)
        {
            string? module = !key.StartsWith(Prefix, StringComparison.Ordinal) ? null
                : key.EndsWith(DownSuffix, StringComparison.Ordinal) ? key[Prefix.Length..^DownSuffix.Length]
                : key.EndsWith(UpSuffix, StringComparison.Ordinal) ? key[Prefix.Length..^UpSuffix.Length]
                : null;
            if (module is null) throw new InputException($"{file.Path}: key '{key}' is not '{Prefix}<module>{DownSuffix}' or '{UpSuffix}'");
            modules.Add(module);
        }
        return LoraPairs.Deltas(file, modules, Up, Down);
    }
}

/// Reading back up/down pairs (the writers' tests and round trips).
internal static class LoraPairs
{
    public static Dictionary<string, Tensor> Deltas(SafeTensorsFile file, IEnumerable<string> modules, Func<string, string> upKey, Func<string, string> downKey)
    {
        var deltas = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = torch.no_grad();
        foreach (var module in modules)
        {
            if (!file.Tensors.ContainsKey(upKey(module))) throw new InputException($"{file.Path}: missing key '{upKey(module)}'");
            if (!file.Tensors.ContainsKey(downKey(module))) throw new InputException($"{file.Path}: missing key '{downKey(module)}'");
            using var scope = torch.NewDisposeScope();
            var up = file.Read(upKey(module)).to_type(ScalarType.Float64);
            var down = file.Read(downKey(module)).to_type(ScalarType.Float64);
            deltas[module] = up.matmul(down).MoveToOuterDisposeScope();
        }
        return deltas;
    }
}
