using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// Writes a model's three networks as one original-LDM single file (`model.diffusion_model.*`, `first_stage_model.*`,
/// `cond_stage_model.transformer.text_model.*` for SD 1.x or `cond_stage_model.model.*` for SD 2.x), the layout
/// diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py and kohya's model_util.py write and A1111,
/// Forge and ComfyUI load. The correspondence is the reader's (LdmKeyMap): each diffusers name gets its key from the
/// reverse rules (LdmKeyMap.LdmKey), every key made is mapped forward again (LdmKeyMap.Target) and must give back
/// exactly the names it was made from, and the tensor is rebuilt by inverting the conversion the reader would apply:
/// a copy; a Linear weight [C, C] as the 1×1 convolution [C, C, 1, 1] of LDM's VAE attention; OpenCLIP's fused
/// in_proj as q, k and v stacked by rows. Finally the whole header is mapped as the reader maps a file, and must
/// give every source tensor with its shape. Tensors are written in their stored dtype, streamed one at a time, and the
/// file appears atomically (SafeTensorsFile.Save).
///
/// An OpenCLIP text encoder is written with one block more than it has, as every SD 2.x file has it: SD 2 reads the
/// penultimate of OpenCLIP's 24 blocks, so readers (A1111's and ComfyUI's models, cdiff's LdmArchitecture) expect the
/// unused last one. A single-file source's own unused block, text_projection and logit_scale are carried over; a
/// diffusers folder has none, and gets a copy of its last layer (as kohya's sd-scripts writes one).
public static class LdmSingleFileWriter
{
    /// Writes `model` to `path`, with `unetReplacements` (diffusers UNet names → tensors the caller owns, e.g. merged
    /// weights) written instead of the stored tensors, in their own dtype.
    public static void Save(string path, ModelTensors model, IReadOnlyDictionary<string, Tensor> unetReplacements, IReadOnlyDictionary<string, string>? metadata)
    {
        var entries = Entries(model, unetReplacements);
        Verify(entries, model, path);
        SafeTensorsFile.Save(path, entries, metadata);
    }

    /// The file's entries: LDM keys, dtypes, shapes and how each tensor is made.
    public static IReadOnlyList<SafeTensorEntry> Entries(ModelTensors model, IReadOnlyDictionary<string, Tensor> unetReplacements)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(unetReplacements);
        foreach (var name in unetReplacements.Keys)
            if (!model.Unet.ContainsKey(name)) throw new ArgumentException($"the UNet has no tensor '{name}' to replace", nameof(unetReplacements));

        var upBlocksWithAttention = model.Unet.Keys.Select(k => LdmKeyMap.Index(k, "up_blocks."))
            .Where(i => i is { } u && u.Tail.StartsWith("attentions.", StringComparison.Ordinal)).Select(i => i!.Value.Number).ToHashSet();
        var groups = new SortedDictionary<string, (SdComponent Component, List<ComponentTensor> Parts)>(StringComparer.Ordinal);
        foreach (var component in new[] { SdComponent.Unet, SdComponent.Vae, SdComponent.TextEncoder })
            foreach (var (name, tensor) in model.For(component).OrderBy(t => t.Key, StringComparer.Ordinal))
            {
                var key = LdmKeyMap.LdmKey(component, name, model.Layout, model.OpenClip, upBlocksWithAttention.Contains)
                    ?? throw new CheckpointMismatchException($"{model.Source}: the {LdmMapping.Describe(component)}'s tensor '{name}' has no place in the original-LDM single-file layout");
                if (!groups.TryGetValue(key, out var group)) groups[key] = group = (component, []);
                group.Parts.Add(tensor);
            }

        var entries = new List<SafeTensorEntry>();
        foreach (var (key, (component, parts)) in groups)
            entries.Add(Entry(key, component, parts, model.Layout, unetReplacements));
        entries.AddRange(UnusedTextEntries(model, entries));
        return entries;
    }

    /// The LDM tensor `key` from the diffusers tensors that map to it, by inverting the reader's conversion(s).
    private static SafeTensorEntry Entry(string key, SdComponent component, List<ComponentTensor> parts, LdmLayout layout,
        IReadOnlyDictionary<string, Tensor> unetReplacements)
    {
        var target = LdmKeyMap.Target(key, layout);
        var made = parts.Select(p => p.Name).Order(StringComparer.Ordinal).ToList();
        var read = target.Names.Select(n => n.Name).Order(StringComparer.Ordinal).ToList();
        if (target.Component != component || !made.SequenceEqual(read))
            throw new InvalidOperationException($"the LDM key map does not invert: {string.Join(", ", made)} were written as '{key}', which reads back as " +
                (target.Component is null ? (target.Ignored ? "an unread key" : "no known key") : $"{LdmMapping.Describe(target.Component.Value)} {string.Join(", ", read)}"));
        // In the reader's order (q, k, v for a fused projection).
        var ordered = target.Names.Select(n => (n.Conversion, Part: parts.Single(p => p.Name == n.Name))).ToList();

        if (ordered is [var (conversion, part)])
        {
            if (component == SdComponent.Unet && unetReplacements.TryGetValue(part.Name, out var replacement))
            {
                if (conversion != TensorConversion.Copy || !replacement.shape.SequenceEqual(part.Shape))
                    throw new ArgumentException($"replacement for '{part.Name}' has shape [{string.Join(", ", replacement.shape)}], the tensor [{string.Join(", ", part.Shape)}]");
                return new SafeTensorEntry(key, replacement.dtype, part.Shape, () => replacement, DisposeAfterWrite: false);
            }
            return conversion switch
            {
                TensorConversion.Copy => new SafeTensorEntry(key, part.DType, part.Shape, () => part.Read(true)),
                TensorConversion.Conv1x1ToLinear when part.Shape.Length == 2 =>
                    new SafeTensorEntry(key, part.DType, [.. part.Shape, 1, 1], () => part.Read(true).reshape(part.Shape[0], part.Shape[1], 1, 1)),
                TensorConversion.Conv1x1ToLinear => new SafeTensorEntry(key, part.DType, part.Shape, () => part.Read(true)),
                _ => throw new InvalidOperationException($"'{key}': one tensor for the row-stacked conversion {conversion}"),
            };
        }
        if (ordered.Select(o => o.Conversion).SequenceEqual([TensorConversion.QueryRows, TensorConversion.KeyRows, TensorConversion.ValueRows]))
        {
            var first = ordered[0].Part;
            foreach (var (_, p) in ordered)
                if (p.DType != first.DType || !p.Shape.SequenceEqual(first.Shape))
                    throw new CheckpointMismatchException($"'{p.Name}' is {p.DType} [{string.Join(", ", p.Shape)}], '{first.Name}' {first.DType} [{string.Join(", ", first.Shape)}]: q, k and v must match to be stacked into '{key}'");
            long[] shape = [3 * first.Shape[0], .. first.Shape.Skip(1)];
            return new SafeTensorEntry(key, first.DType, shape, () => torch.cat(ordered.Select(o => o.Part.Read(true)).ToList(), 0));
        }
        throw new InvalidOperationException($"'{key}': conversions {string.Join(", ", ordered.Select(o => o.Conversion))} cannot be inverted");
    }

    /// OpenCLIP's unused last block (and the single file's other unread text-encoder keys): carried over from a single
    /// file, else a copy of the last written block renumbered.
    private static IEnumerable<SafeTensorEntry> UnusedTextEntries(ModelTensors model, List<SafeTensorEntry> written)
    {
        if (!model.OpenClip) yield break;
        var taken = written.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var t in model.UnreadText)
        {
            if (!taken.Add(t.Name)) throw new InvalidOperationException($"'{t.Name}' is both a written and an unread key");
            yield return new SafeTensorEntry(t.Name, t.DType, t.Shape, () => t.Read(true));
        }
        int layers = model.Layout.TextEncoderLayers;
        string unused = $"{LdmKeyMap.OpenClipPrefix}transformer.resblocks.{layers}.", last = $"{LdmKeyMap.OpenClipPrefix}transformer.resblocks.{layers - 1}.";
        if (layers < 1 || taken.Any(k => k.StartsWith(unused, StringComparison.Ordinal))) yield break;
        foreach (var e in written.Where(e => e.Name.StartsWith(last, StringComparison.Ordinal)).ToList())
            yield return e with { Name = unused + e.Name[last.Length..] };
    }

    /// The header as the reader maps it: no key without a rule, and every source tensor back with its shape.
    private static void Verify(IReadOnlyList<SafeTensorEntry> entries, ModelTensors model, string path)
    {
        var header = entries.ToDictionary(e => e.Name, e => new SafeTensorInfo(e.Name, SafeTensorsFile.ToDType(e.DType), e.Shape, 0, 0), StringComparer.Ordinal);
        var mapping = LdmKeyMap.Map(header, model.Layout, path);
        if (mapping.Unknown.Count > 0)
            throw new InvalidOperationException($"{path}: written key '{mapping.Unknown[0]}' fits no rule of the reader");
        foreach (var component in new[] { SdComponent.Unet, SdComponent.Vae, SdComponent.TextEncoder })
        {
            var source = model.For(component);
            var mapped = mapping.For(component);
            if (mapped.Count != source.Count || source.Any(s => !mapped.TryGetValue(s.Key, out var m) || !m.Shape.SequenceEqual(s.Value.Shape)))
            {
                var bad = source.FirstOrDefault(s => !mapped.TryGetValue(s.Key, out var m) || !m.Shape.SequenceEqual(s.Value.Shape)).Key
                          ?? mapped.Keys.First(k => !source.ContainsKey(k));
                throw new InvalidOperationException($"{path}: the written {LdmMapping.Describe(component)} does not read back as the source's: '{bad}'");
            }
        }
    }
}
