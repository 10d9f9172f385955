using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Checkpoints;

/// A checkpoint whose tensors do not match the module: the message names the file and the key.
public sealed class CheckpointMismatchException(string message) : InputException(message);

/// Strict, by-name loading of stored weights into a TorchSharp module: every parameter and persistent buffer
/// must be offered with its exact shape, and nothing may be left over. The rules live here once, whatever the
/// source (a safetensors file keyed by the module's names, or an original-LDM single file's renamed view): a
/// source only says what it offers and how its errors read. Tensors are read one stored tensor at a time and
/// copied into the module's own storage, so peak memory is one tensor above the model itself.
public static class StateDictLoader
{
    /// Loads every parameter and persistent buffer of `module` from `source`. A name the module has but the
    /// source lacks, a name the source offers but the module lacks (unless the source says it may be unused), or a
    /// shape difference is an error naming the key, found from the header before any weight is read.
    public static void LoadStrict(nn.Module module, IStateDictSource source)
    {
        // Enumerating a module's parameters can make new Tensor wrappers for them (TorchSharp's native modules):
        // the scope owns those wrappers (never the module's own parameters, which are detached from every scope).
        using var scope = torch.NewDisposeScope();
        var targets = Targets(module);

        var missing = targets.Keys.Where(k => !source.Shapes.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new CheckpointMismatchException(source.MissingMessage(missing[0]) + More(missing.Count));

        var unexpected = source.Shapes.Keys
            .Where(k => !targets.ContainsKey(k) && !source.MayBeUnused(k))
            .Order(StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new CheckpointMismatchException(source.UnexpectedMessage(unexpected[0]) + More(unexpected.Count));

        foreach (var (name, target) in targets)
            if (!source.Shapes[name].SequenceEqual(target.shape))
                throw new CheckpointMismatchException(source.ShapeMessage(name, target.shape));

        using var noGrad = torch.no_grad();
        // One read per stored tensor: OpenCLIP's in_proj_weight feeds q_proj, k_proj and v_proj.
        foreach (var group in targets.GroupBy(t => source.StoredKey(t.Key), StringComparer.Ordinal))
        {
            using var step = torch.NewDisposeScope(); // the read, its views and the casts stay owned during copy_
            var stored = source.ReadStored(group.Key);
            foreach (var (name, target) in group)
                target.copy_(source.Convert(name, stored).to_type(target.dtype));
        }
    }

    /// Loads `module` from a safetensors file keyed by its names. `ignoreUnexpected` lists checkpoint keys that
    /// are known and harmless to skip (e.g. transformers' `text_model.embeddings.position_ids`); with `keyPrefix`,
    /// the module's names are the file's keys under that prefix (other keys are not looked at).
    public static void LoadStrict(nn.Module module, SafeTensorsFile file, Func<string, bool>? ignoreUnexpected = null, string? keyPrefix = null) =>
        LoadStrict(module, new SafeTensorsStateDict(file, ignoreUnexpected, keyPrefix));

    /// Loads a diffusers component folder's weights (`diffusion_pytorch_model.safetensors` or `model.safetensors`).
    public static void LoadStrict(nn.Module module, string path, Func<string, bool>? ignoreUnexpected = null)
    {
        using var file = SafeTensorsFile.Open(path);
        LoadStrict(module, file, ignoreUnexpected);
    }

    /// Every parameter and buffer by its dotted name.
    public static Dictionary<string, Tensor> Targets(nn.Module module)
    {
        var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in module.named_parameters()) all[name] = p;
        foreach (var (name, b) in module.named_buffers()) all.TryAdd(name, b);
        return all;
    }

    private static string More(int count) => count > 1 ? $" (and {count - 1} more)" : "";
}
