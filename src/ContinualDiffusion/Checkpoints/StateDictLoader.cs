using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Checkpoints;

/// A checkpoint whose tensors do not match the module: the message names the file and the key.
public sealed class CheckpointMismatchException(string message) : InputException(message);

/// Strict, by-name loading of safetensors weights into a TorchSharp module whose parameter and buffer
/// names equal the checkpoint keys (diffusers / transformers names). Tensors are read one at a time and
/// copied into the module's own storage, so peak memory is one tensor above the model itself.
public static class StateDictLoader
{
    /// Loads every parameter and persistent buffer of `module` from `file`. A key the module has but the
    /// file lacks, a key the file has but the module lacks, or a shape difference is an error naming the key.
    /// `ignoreUnexpected` lists checkpoint keys that are known and harmless to skip (e.g. transformers'
    /// `text_model.embeddings.position_ids`).
    public static void LoadStrict(nn.Module module, SafeTensorsFile file, Func<string, bool>? ignoreUnexpected = null, string? keyPrefix = null)
    {
        // Enumerating a module's parameters can make new Tensor wrappers for them (TorchSharp's native modules):
        // the scope owns those wrappers (never the module's own parameters, which are detached from every scope).
        using var scope = torch.NewDisposeScope();
        var targets = Targets(module);
        string Key(string name) => keyPrefix is null ? name : keyPrefix + name;

        var missing = targets.Keys.Where(k => !file.Tensors.ContainsKey(Key(k))).ToList();
        if (missing.Count > 0)
            throw new CheckpointMismatchException($"{file.Path}: missing key '{Key(missing[0])}'" + More(missing.Count));

        var expectedKeys = new HashSet<string>(targets.Keys.Select(Key), StringComparer.Ordinal);
        var unexpected = file.Tensors.Keys
            .Where(k => (keyPrefix is null || k.StartsWith(keyPrefix, StringComparison.Ordinal)) && !expectedKeys.Contains(k))
            .Where(k => ignoreUnexpected is null || !ignoreUnexpected(k))
            .OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new CheckpointMismatchException($"{file.Path}: unexpected key '{unexpected[0]}'" + More(unexpected.Count));

        foreach (var (name, target) in targets)
        {
            var info = file.Tensors[Key(name)];
            if (!info.Shape.SequenceEqual(target.shape))
                throw new CheckpointMismatchException(
                    $"{file.Path}: key '{Key(name)}' has shape [{string.Join(", ", info.Shape)}], the model expects [{string.Join(", ", target.shape)}]");
        }

        using var noGrad = torch.no_grad();
        foreach (var (name, target) in targets)
        {
            using var step = torch.NewDisposeScope(); // the cast's temporary stays owned during copy_
            var source = file.Read(Key(name));
            target.copy_(source.to_type(target.dtype));
        }
    }

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
