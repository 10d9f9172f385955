namespace ContinualDiffusion.Interop.Import;

/// One module of a foreign LoRA file: which weight it changes and where its factors are. `DeltaShape` is the shape
/// of up·down as the file gives it ([out, in] for a Linear, [out, in, kh, kw] for a Conv2d); `Name` is how the file
/// names the module (the kohya name, or `unet.<path>` / `text_encoder.<path>`).
public sealed record LoraModule(LoraComponent Component, string Path, string Name, string DownKey, string UpKey, string? AlphaKey, long Rank, long[] DeltaShape);

/// What a LoRA file's keys say, checked against the model before any weight is read: the modules to merge and the
/// keys that are not LoRA keys of a module the model has.
public sealed record LoraKeyPlan(LoraFileFormat Format, IReadOnlyList<LoraModule> Modules, IReadOnlyList<string> UnknownKeys);

/// Parses a LoRA file's key names and header shapes (no tensor math, no weights read). Key forms:
/// - kohya-ss/sd-scripts `networks/lora.py`: `lora_unet_<path>` / `lora_te_<path>` (paths with `.` → `_`) +
///   `.lora_down.weight` [r, in] or [r, in, kh, kw], `.lora_up.weight` [out, r] or [out, r, 1, 1], optional `.alpha`
///   (LoRAModule: Conv2d LoRAs are lora_down = Conv2d(in, r, kernel), lora_up = Conv2d(r, out, 1×1), so 1×1 convs such
///   as SD 1's proj_in/proj_out and 3×3 "LoCon" convs of ResnetBlock2D/Downsample2D/Upsample2D both merge as
///   up·down over the flattened kernel);
/// - diffusers `loaders/lora_pipeline.py` / `loaders/lora_conversion_utils.py` / PEFT: `unet.<path>` /
///   `text_encoder.<path>` + `.lora.down.weight`/`.lora.up.weight`, `.lora_A.weight`/`.lora_B.weight` or
///   `.lora_linear_layer.down.weight`/`.up.weight` (the older LoRACompatible names), and `.alpha` where the
///   conversion kept kohya's alphas (`network_alphas`, keyed `<prefix>.<path>.alpha`).
/// Refused with the reason: SDXL files (`lora_te1_`/`lora_te2_`, `text_encoder_2.`), LyCORIS LoHa/LoKr/Tucker/DoRA/OFT
/// keys (they are not up·down and must not be half-applied even with --lora-ignore-unknown), a module with a down but
/// no up factor (or the reverse), inconsistent ranks, and a delta whose shape is not the weight's.
public static class LoraKeys
{
    private enum Part { Down, Up, Alpha }

    private static readonly (string Suffix, Part Part)[] KohyaSuffixes =
    [
        (".lora_down.weight", Part.Down), (".lora_up.weight", Part.Up), (".alpha", Part.Alpha),
    ];

    private static readonly (string Suffix, Part Part)[] DiffusersSuffixes =
    [
        (".lora.down.weight", Part.Down), (".lora.up.weight", Part.Up),
        (".lora_A.weight", Part.Down), (".lora_B.weight", Part.Up),
        (".lora_linear_layer.down.weight", Part.Down), (".lora_linear_layer.up.weight", Part.Up),
        (".alpha", Part.Alpha),
    ];

    private static readonly (string Prefix, LoraComponent Component)[] DiffusersPrefixes =
    [
        ("unet.", LoraComponent.Unet), ("text_encoder.", LoraComponent.TextEncoder),
    ];

    /// Key fragments of LyCORIS network types that are not a plain up·down LoRA.
    private static readonly (string Marker, string Kind)[] Unsupported =
    [
        (".hada_", "LoHa"), (".lokr_", "LoKr"), (".lora_mid.", "Tucker LoCon (lora_mid)"), (".dora_scale", "DoRA"),
        (".oft_", "OFT"),
        (".lora_magnitude_vector", "DoRA (PEFT)"), (".lora_B.bias", "LoRA with a bias (PEFT lora_bias)"),
    ];

    /// Key endings of LyCORIS full-weight differences.
    private static readonly (string Suffix, string Kind)[] UnsupportedEndings = [(".diff", "full-weight diff"), (".diff_b", "full-weight bias diff")];

    public static LoraKeyPlan Parse(string file, IReadOnlyDictionary<string, long[]> keyShapes, LoraTargets targets)
    {
        ArgumentNullException.ThrowIfNull(keyShapes);
        ArgumentNullException.ThrowIfNull(targets);
        var keys = keyShapes.Keys.Order(StringComparer.Ordinal).ToList();
        if (keys.Count == 0) throw new InputException($"{file}: holds no tensors, expected LoRA factors");
        foreach (var key in keys)
        {
            var kind = Unsupported.FirstOrDefault(u => key.Contains(u.Marker, StringComparison.Ordinal)).Kind
                       ?? UnsupportedEndings.FirstOrDefault(u => key.EndsWith(u.Suffix, StringComparison.Ordinal)).Kind;
            if (kind is not null)
                throw new InputException($"{file}: a LyCORIS {kind} file (key '{key}'); cdiff applies plain LoRA (lora_down/lora_up, LoCon included) only");
            if (key.StartsWith("lora_te1_", StringComparison.Ordinal) || key.StartsWith("lora_te2_", StringComparison.Ordinal) || key.StartsWith("text_encoder_2.", StringComparison.Ordinal))
                throw new InputException($"{file}: an SDXL LoRA (key '{key}' names one of SDXL's two text encoders); cdiff runs SD 1.x/2.x");
        }
        var format = LoraFileFormats.Detect(keys) ?? throw new InputException(NotALora(file, keys));

        var groups = new SortedDictionary<string, (LoraComponent Component, string Path, string? Down, string? Up, string? Alpha)>(StringComparer.Ordinal);
        var unknown = new List<string>();
        foreach (var key in keys)
        {
            var parsed = format == LoraFileFormat.Kohya ? ParseKohya(key, targets) : ParseDiffusers(key, targets);
            if (parsed is not { } p) { unknown.Add(key); continue; }
            var g = groups.TryGetValue(p.Name, out var existing) ? existing : (p.Component, p.Path, null, null, null);
            string? Once(string? current) => current is null ? key
                : throw new InputException($"{file}: keys '{current}' and '{key}' are both the {p.Part.ToString().ToLowerInvariant()} factor of module {p.Name}");
            g = p.Part switch
            {
                Part.Down => g with { Down = Once(g.Down) },
                Part.Up => g with { Up = Once(g.Up) },
                _ => g with { Alpha = Once(g.Alpha) },
            };
            groups[p.Name] = g;
        }

        var modules = new List<LoraModule>();
        foreach (var (name, g) in groups)
        {
            if (g.Down is null || g.Up is null)
                throw new InputException($"{file}: module {name} has {(g.Down ?? g.Up ?? g.Alpha)} but no {(g.Down is null ? "down (A)" : "up (B)")} factor");
            modules.Add(Check(file, name, g.Component, g.Path, g.Down, g.Up, g.Alpha, keyShapes, targets));
        }
        return new LoraKeyPlan(format, modules, unknown);
    }

    /// The one-line error for unknown keys: how many, the first few, and the way out.
    public static string UnknownKeysMessage(string file, IReadOnlyList<string> unknown, int show = 3)
    {
        var first = string.Join(", ", unknown.Take(show).Select(k => $"'{k}'"));
        string more = unknown.Count > show ? $" and {unknown.Count - show} more" : "";
        return $"{file}: {unknown.Count} key(s) are not LoRA keys of a module this model has: {first}{more}; pass --lora-ignore-unknown to skip them";
    }

    private static LoraModule Check(string file, string name, LoraComponent component, string path, string downKey, string upKey, string? alphaKey,
        IReadOnlyDictionary<string, long[]> shapes, LoraTargets targets)
    {
        long[] down = shapes[downKey], up = shapes[upKey];
        bool linear = down.Length == 2 && up.Length == 2;
        bool conv = down.Length == 4 && up.Length == 4;
        if (!linear && !conv)
            throw new InputException($"{file}: module {name} has factors {Dims(down)} (down) and {Dims(up)} (up); expected [r, in] and [out, r], or [r, in, kh, kw] and [out, r, 1, 1]");
        if (conv && (up[2] != 1 || up[3] != 1))
            throw new InputException($"{file}: key '{upKey}' is {Dims(up)}, a {up[2]}×{up[3]} up kernel; kohya LoRA/LoCon up factors are 1×1");
        if (down[0] != up[1])
            throw new InputException($"{file}: module {name} has rank {down[0]} in '{downKey}' {Dims(down)} but {up[1]} in '{upKey}' {Dims(up)}");
        if (down[0] < 1)
            throw new InputException($"{file}: module {name} has rank {down[0]} ('{downKey}' {Dims(down)}); expected at least 1");
        if (alphaKey is not null && shapes[alphaKey].Aggregate(1L, (a, b) => a * b) != 1)
            throw new InputException($"{file}: key '{alphaKey}' is {Dims(shapes[alphaKey])}, expected one number");
        long[] delta = conv ? [up[0], down[1], down[2], down[3]] : [up[0], down[1]];
        var weight = targets.Shape(component, path)!;
        if (!Fits(delta, weight))
            throw new InputException(
                $"{file}: key '{downKey}' makes a {Dims(delta)} delta but the {(component == LoraComponent.Unet ? "UNet" : "text encoder")} weight {path}.weight is {Dims(weight)} " +
                "(a LoRA for another base model, e.g. SD 2 on SD 1?)");
        return new LoraModule(component, path, name, downKey, upKey, alphaKey, down[0], delta);
    }

    /// The same shape, or a 1×1 conv delta for a Linear weight and the reverse (SD 1's proj_in/proj_out are 1×1 convs,
    /// SD 2's are Linears; kohya merges a 1×1 conv LoRA as a matrix product).
    public static bool Fits(long[] delta, long[] weight)
    {
        if (delta.SequenceEqual(weight)) return true;
        static long[] Squeeze(long[] s) => s.Length == 4 && s[2] == 1 && s[3] == 1 ? [s[0], s[1]] : s;
        return Squeeze(delta).SequenceEqual(Squeeze(weight));
    }

    private static (string Name, LoraComponent Component, string Path, Part Part)? ParseKohya(string key, LoraTargets targets)
    {
        foreach (var (suffix, part) in KohyaSuffixes)
        {
            if (!key.EndsWith(suffix, StringComparison.Ordinal)) continue;
            var name = key[..^suffix.Length];
            return targets.FromKohya(name) is { } t ? (name, t.Component, t.Path, part) : null;
        }
        return null;
    }

    private static (string Name, LoraComponent Component, string Path, Part Part)? ParseDiffusers(string key, LoraTargets targets)
    {
        foreach (var (prefix, component) in DiffusersPrefixes)
        {
            if (!key.StartsWith(prefix, StringComparison.Ordinal)) continue;
            foreach (var (suffix, part) in DiffusersSuffixes)
            {
                if (!key.EndsWith(suffix, StringComparison.Ordinal) || key.Length <= prefix.Length + suffix.Length) continue;
                var path = key[prefix.Length..^suffix.Length];
                return targets.Shape(component, path) is not null ? (prefix + path, component, path, part) : null;
            }
        }
        return null;
    }

    private static string NotALora(string file, IReadOnlyList<string> keys)
    {
        string first = string.Join(", ", keys.Take(3).Select(k => $"'{k}'"));
        if (keys.Any(k => k.StartsWith("base_model.model.", StringComparison.Ordinal)))
            return $"{file}: a PEFT adapter_model.safetensors (keys 'base_model.model.…'), whose scale lives in adapter_config.json; give a diffusers (unet.…) or kohya (lora_unet_…) LoRA file";
        return $"{file}: not a kohya (lora_unet_…, lora_te_…) or diffusers (unet.…, text_encoder.…) LoRA file; its first keys: {first}";
    }

    private static string Dims(long[] shape) => $"[{string.Join(", ", shape)}]";
}
