using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Import;

/// Another tool's LoRA file, opened and checked against a model (keys and shapes from the header, each module's alpha
/// read): everything that can be wrong with it is found here, before any weight of the model changes. Holds the file
/// open for ForeignLoraApplier to read the factors from.
public sealed class ForeignLora : IDisposable
{
    private readonly SafeTensorsFile _file;

    public LoraSpec Spec { get; }
    public LoraKeyPlan Plan { get; }

    /// Per module name: the factor up·down is multiplied by, multiplier · alpha / rank (kohya-ss/sd-scripts
    /// `networks/lora.py` LoRAModule: `alpha = lora_dim if alpha is None or alpha == 0`, `scale = alpha / lora_dim`,
    /// merged as `weight + multiplier * (up @ down) * scale`; diffusers without alpha keys: scale 1).
    public IReadOnlyDictionary<string, double> Factors { get; }

    /// The keys skipped under --lora-ignore-unknown (empty otherwise: unknown keys are an error).
    public IReadOnlyList<string> SkippedKeys => Plan.UnknownKeys;

    private ForeignLora(SafeTensorsFile file, LoraSpec spec, LoraKeyPlan plan, IReadOnlyDictionary<string, double> factors)
    {
        _file = file; Spec = spec; Plan = plan; Factors = factors;
    }

    public static ForeignLora Open(LoraSpec spec, LoraTargets targets, bool ignoreUnknown)
    {
        ArgumentNullException.ThrowIfNull(spec);
        PickleRefusal.ThrowIfPickle(spec.Path, "the LoRA");
        var file = SafeTensorsFile.Open(spec.Path);
        try
        {
            // Newer diffusers writes the LoRA's own LoraConfig (lora_alpha, r, rank/alpha patterns, rsLoRA, DoRA) into the
            // header and scales by it (diffusers loaders/lora_base.py, _create_lora_config); merging such a file at
            // scale alpha/rank from its shapes could be the wrong strength, so it is refused until that is read.
            if (file.Metadata.ContainsKey("lora_adapter_metadata"))
                throw new InputException($"{spec.Path}: carries its own LoRA config in the header (diffusers 'lora_adapter_metadata': lora_alpha, rsLoRA, DoRA), which cdiff does not read yet; convert it to the kohya form");
            var plan = LoraKeys.Parse(spec.Path, file.Tensors.ToDictionary(t => t.Key, t => t.Value.Shape, StringComparer.Ordinal), targets);
            if (plan.UnknownKeys.Count > 0 && !ignoreUnknown)
                throw new InputException(LoraKeys.UnknownKeysMessage(spec.Path, plan.UnknownKeys));
            if (plan.Modules.Count == 0)
                throw new InputException($"{spec.Path}: none of its {file.Tensors.Count} keys is a LoRA key of a module this model has");
            var factors = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var m in plan.Modules)
            {
                double alpha = m.AlphaKey is null ? 0 : ReadNumber(file, m.AlphaKey);
                if (!double.IsFinite(alpha)) throw new InputException($"{spec.Path}: key '{m.AlphaKey}' is {alpha}, expected a finite alpha");
                if (alpha == 0) alpha = m.Rank; // kohya: no alpha, or 0, means alpha = rank
                factors[m.Name] = spec.Scale * (alpha / m.Rank);
            }
            return new ForeignLora(file, spec, plan, factors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// A factor tensor as stored (F16/BF16 upcast to F32); the caller owns it.
    internal Tensor Read(string key) => _file.Read(key);

    private static double ReadNumber(SafeTensorsFile file, string key)
    {
        using var scope = torch.NewDisposeScope();
        return file.Read(key).to_type(ScalarType.Float64).reshape(-1)[0].item<double>();
    }

    public void Dispose() => _file.Dispose();
}
