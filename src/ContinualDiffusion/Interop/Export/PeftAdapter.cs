using System.Text.Json;
using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// A PEFT LoRA adapter folder for the UNet, what `PeftModel.save_pretrained` writes and
/// `PeftModel.from_pretrained(unet, DIR)` loads (huggingface/peft): `adapter_model.safetensors` with
/// `base_model.model.<module path>.lora_A.weight` [R, in] (down) and `.lora_B.weight` [out, R] (up) (the adapter name
/// removed, as `get_peft_model_state_dict` saves it), and `adapter_config.json` with the fields of
/// `src/peft/tuners/lora/config.py` LoraConfig. lora_alpha = r, so PEFT's scale lora_alpha / r is exactly 1.
/// target_modules lists the adapted modules by full path: PEFT matches a full path exactly, where a bare "to_k"
/// would also adapt every self-attention.
public static class PeftAdapter
{
    public const string WeightsFileName = "adapter_model.safetensors";
    public const string ConfigFileName = "adapter_config.json";
    public const string Prefix = "base_model.model.";
    public const string ASuffix = ".lora_A.weight";
    public const string BSuffix = ".lora_B.weight";

    /// The key form: `base_model.model.<module>` + lora_A (down) / lora_B (up).
    public static readonly LoraKeyForm Keys = new(Prefix, ASuffix, BSuffix);

    public static void Save(string dir, StackedLora lora, string baseModelPath)
    {
        ArgumentNullException.ThrowIfNull(lora);
        Keys.Save(Path.Combine(dir, WeightsFileName), lora);
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFileName), Config(lora.Rank, lora.Layers.Select(l => l.Name), baseModelPath));
    }

    /// adapter_config.json: every LoraConfig field PEFT writes, with values that make PEFT apply exactly up·down.
    public static string Config(int rank, IEnumerable<string> targetModules, string baseModelPath)
    {
        var config = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = baseModelPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layer_replication"] = null,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["loftq_config"] = new JsonObject(),
            ["lora_alpha"] = rank,
            ["lora_dropout"] = 0.0,
            ["megatron_config"] = null,
            ["megatron_core"] = "megatron.core",
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = rank,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            ["target_modules"] = new JsonArray(targetModules.Order(StringComparer.Ordinal).Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
            ["task_type"] = null,
            ["use_dora"] = false,
            ["use_rslora"] = false,
        };
        return config.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// Reads the adapter back as delta = B·A · (lora_alpha / r) per module path (float64, owned by the caller).
    public static Dictionary<string, Tensor> ReadDeltas(string dir)
    {
        var configPath = Path.Combine(dir, ConfigFileName);
        using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
        double scale = doc.RootElement.GetProperty("lora_alpha").GetDouble() / doc.RootElement.GetProperty("r").GetDouble();
        using var file = SafeTensorsFile.Open(Path.Combine(dir, WeightsFileName));
        var deltas = Keys.ReadDeltas(file);
        if (scale != 1)
            foreach (var d in deltas.Values) Runtime.OwnedScalars.MultiplyInPlace(d, scale);
        return deltas;
    }
}
