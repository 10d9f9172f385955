using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// A kohya-ss LoRA file, the form A1111, Forge, ComfyUI and sd-scripts load. Conventions from kohya-ss/sd-scripts:
/// - `networks/lora.py` (LoRAModule): per module `<name>.lora_down.weight` [R, in], `<name>.lora_up.weight` [out, R] and
///   `<name>.alpha` (a 0-dim float), applied as W + up·down·(alpha / R); module names as KohyaNames.
///   alpha = R here, so the scale is exactly 1 and the delta is exactly what cdiff merges.
/// - `train_network.py` / `library/train_util.py`: the `ss_*` metadata (`ss_network_module` "networks.lora",
///   `ss_network_dim`, `ss_network_alpha`, `ss_v2` "True"/"False", `ss_base_model_version` from
///   `library/model_util.py` get_model_version_str_for_sd1_sd2: "sd_v1", "sd_v2", with "_v" for v-prediction).
/// - `library/sai_model_spec.py`: `modelspec.*` (architecture `stable-diffusion-v1/lora`,
///   `stable-diffusion-v2-512/lora` or `stable-diffusion-v2-768-v/lora`; implementation "diffusers" for an SD 1/2
///   LoRA, as determine_implementation gives it).
public static class KohyaLoraFile
{
    /// The metadata for `lora` exported from `model`. `title`: the file's stem; `extra`: cdiff's own keys.
    public static Dictionary<string, string> Metadata(ExportBaseModel model, int rank, string title, string description,
        IEnumerable<string> triggerWords, IReadOnlyDictionary<string, string> extra)
    {
        string rankText = rank.ToString(CultureInfo.InvariantCulture);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = "pt",
            ["ss_network_module"] = "networks.lora",
            ["ss_network_dim"] = rankText,
            ["ss_network_alpha"] = rankText + ".0", // kohya writes str(float(network_alpha))
            ["ss_v2"] = model.IsV2 ? "True" : "False",
            ["ss_base_model_version"] = (model.IsV2 ? "sd_v2" : "sd_v1") + (model.IsVPrediction ? "_v" : ""),
            ["ss_sd_model_name"] = System.IO.Path.GetFileName(model.Path.TrimEnd('/', '\\')),
            ["ss_output_name"] = title,
            ["ss_training_comment"] = description,
        };
        ModelSpec.AddTo(metadata, model, Architecture(model), "diffusers", title, description, triggerWords);
        foreach (var (k, v) in extra) metadata[k] = v;
        return metadata;
    }

    /// `stable-diffusion-v1/lora`, `stable-diffusion-v2-512/lora` or `stable-diffusion-v2-768-v/lora`.
    public static string Architecture(ExportBaseModel model) => ModelSpec.Architecture(model) + "/lora";

    public static void Save(string path, StackedLora lora, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(lora);
        var entries = new List<SafeTensorEntry>();
        foreach (var layer in lora.Layers)
        {
            var name = KohyaNames.ModuleName(layer.Name);
            var up = layer.Up;
            var down = layer.Down;
            long rank = layer.Rank;
            entries.Add(new SafeTensorEntry(name + KohyaNames.UpSuffix, up.dtype, up.shape, () => up, DisposeAfterWrite: false));
            entries.Add(new SafeTensorEntry(name + KohyaNames.DownSuffix, down.dtype, down.shape, () => down, DisposeAfterWrite: false));
            entries.Add(new SafeTensorEntry(name + KohyaNames.AlphaSuffix, ScalarType.Float32, [], () => OwnedScalars.Full([], rank, ScalarType.Float32)));
        }
        SafeTensorsFile.Save(path, entries, metadata);
    }

    /// Reads a kohya LoRA file back as delta = up·down·alpha/R per module path (float64; the caller owns them), for the
    /// modules in `modulePaths`. A key that is not a LoRA key of one of those modules is an error naming it.
    public static Dictionary<string, Tensor> ReadDeltas(string path, IEnumerable<string> modulePaths)
    {
        var inverse = KohyaNames.Inverse(modulePaths);
        using var file = SafeTensorsFile.Open(path);
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var key in file.Tensors.Keys)
        {
            string? name = key.EndsWith(KohyaNames.DownSuffix, StringComparison.Ordinal) ? key[..^KohyaNames.DownSuffix.Length]
                : key.EndsWith(KohyaNames.UpSuffix, StringComparison.Ordinal) ? key[..^KohyaNames.UpSuffix.Length]
                : key.EndsWith(KohyaNames.AlphaSuffix, StringComparison.Ordinal) ? key[..^KohyaNames.AlphaSuffix.Length]
                : null;
            if (name is null || KohyaNames.ModulePath(name, inverse) is null)
                throw new InputException($"{path}: key '{key}' is not a LoRA key of a module this model has");
            names.Add(name);
        }
        var deltas = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = torch.no_grad();
        foreach (var name in names)
        {
            using var scope = torch.NewDisposeScope();
            var up = file.Read(name + KohyaNames.UpSuffix).to_type(ScalarType.Float64);
            var down = file.Read(name + KohyaNames.DownSuffix).to_type(ScalarType.Float64);
            double alpha = file.Tensors.ContainsKey(name + KohyaNames.AlphaSuffix)
                ? file.Read(name + KohyaNames.AlphaSuffix).to_type(ScalarType.Float64).item<double>()
                : down.shape[0];
            deltas[KohyaNames.ModulePath(name, inverse)!] = up.matmul(down).Times(alpha / down.shape[0]).MoveToOuterDisposeScope();
        }
        return deltas;
    }
}
