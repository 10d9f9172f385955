using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// Strict loading of one component from a renamed view of a safetensors file: StateDictLoader's rules (every
/// parameter and buffer by name and shape, nothing left over), with the diffusers name computed by LdmKeyMap and
/// the values converted by MappedTensor. Errors name the file, the LDM key and the diffusers key.
public static class MappedWeightsLoader
{
    public static void LoadStrict(nn.Module module, SafeTensorsFile file, IReadOnlyDictionary<string, MappedTensor> mapped, SdComponent component)
    {
        string what = LdmMapping.Describe(component);
        // Enumerating parameters can make wrappers for them (TorchSharp's native modules): the scope owns those.
        using var scope = torch.NewDisposeScope();
        var targets = StateDictLoader.Targets(module);

        var missing = targets.Keys.Where(k => !mapped.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            throw new CheckpointMismatchException($"{file.Path}: no key of this LDM checkpoint gives the {what}'s '{missing[0]}'" + More(missing.Count));

        var unexpected = mapped.Keys.Where(k => !targets.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new CheckpointMismatchException($"{file.Path}: key '{mapped[unexpected[0]].SourceKey}' maps to the {what}'s '{unexpected[0]}', which the model inferred from this file does not have" + More(unexpected.Count));

        foreach (var (name, target) in targets)
        {
            var m = mapped[name];
            if (!m.Shape.SequenceEqual(target.shape))
                throw new CheckpointMismatchException(
                    $"{file.Path}: key '{m.SourceKey}' gives the {what}'s '{name}' shape [{string.Join(", ", m.Shape)}], the model expects [{string.Join(", ", target.shape)}]");
        }

        using var noGrad = torch.no_grad();
        // One read per LDM tensor: OpenCLIP's in_proj_weight feeds q_proj, k_proj and v_proj.
        foreach (var group in targets.GroupBy(t => mapped[t.Key].SourceKey, StringComparer.Ordinal))
        {
            using var step = torch.NewDisposeScope(); // the read, its views and the casts stay owned during copy_
            var source = file.Read(group.Key);
            foreach (var (name, target) in group)
                target.copy_(mapped[name].Convert(source).to_type(target.dtype));
        }
    }

    private static string More(int count) => count > 1 ? $" (and {count - 1} more)" : "";
}
