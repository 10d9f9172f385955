namespace ContinualDiffusion.Interop.Export;

/// Where an export writes, and the rules: an existing target is refused unless `--overwrite`; nothing is visible at
/// the target until everything is written (a file: temp file + rename, Checkpoints/AtomicFile; a folder: written in a
/// hidden temp folder next to it, then renamed into place, the old one moved aside first and deleted last).
public static class ExportOutput
{
    /// The safetensors metadata key every file an export writes carries (the task range), by which `--overwrite`
    /// knows an earlier export.
    public const string ExportMetadataKey = "cdiff_export";

    /// Refuses (InputException, one line) when any of `targets` exists and `overwrite` is false, and, with
    /// `overwrite`, when it is not an earlier export: a folder without an export's marker file, a file without
    /// ExportMetadataKey in its safetensors metadata (another checkpoint, LoRA or embedding, or not a safetensors).
    public static void RequireWritable(IEnumerable<string> targets, bool overwrite)
    {
        foreach (var t in targets)
        {
            bool isFile = File.Exists(t), isDir = Directory.Exists(t);
            if ((isFile || isDir) && !overwrite)
                throw new InputException($"--out: {t} already exists; pass --overwrite to replace it");
            if (isFile && !IsExportFile(t))
                throw new InputException($"--out {t}: exists and is not an earlier export (no '{ExportMetadataKey}' in its safetensors metadata); --overwrite replaces only an export, so choose another name");
            if (isDir && Directory.EnumerateFileSystemEntries(t).Any() && !ExportMarkers.Any(m => File.Exists(Path.Combine(t, m))))
                throw new InputException($"--out {t}: exists and is not an earlier export (it has none of {string.Join(", ", ExportMarkers)}); --overwrite replaces only an export, so choose another folder");
        }
    }

    /// Refuses an `--out` that is, or contains, a folder an export must never replace or delete (the run, the base
    /// model, the current folder): `--overwrite` moves an existing folder aside and deletes it.
    public static void RequireNotProtected(string outPath, IEnumerable<(string Path, string What)> protectedFolders)
    {
        var target = Normal(outPath);
        foreach (var (path, what) in protectedFolders)
        {
            var folder = Normal(path);
            if (folder == target || folder.StartsWith(target + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new InputException($"--out {outPath}: {(folder == target ? "is" : "contains")} {what} ({path}); choose another folder");
        }
    }

    /// Files that mark a folder as an earlier export (diffusers LoRA, PEFT adapter, merged diffusers model): the only
    /// non-empty folders `--overwrite` replaces.
    private static readonly string[] ExportMarkers = ["pytorch_lora_weights.safetensors", "adapter_config.json", "model_index.json"];

    private static bool IsExportFile(string path)
    {
        try
        {
            using var file = Checkpoints.SafeTensorsFile.Open(path);
            return file.Metadata.ContainsKey(ExportMetadataKey);
        }
        catch (InputException) { return false; } // not a safetensors file (or a pickle)
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    private static string Normal(string path) => Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);

    /// Writes a folder at `path` as a whole: `write(tempDir)` fills a temp folder beside it, which then replaces `path`.
    /// On any failure the temp folder is removed and `path` is as it was.
    public static void WriteFolder(string path, bool overwrite, Action<string> write)
    {
        var full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (File.Exists(full)) throw new InputException($"--out: {full} is a file; this format writes a folder");
        RequireWritable([full], overwrite);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var name = Path.GetFileName(full);
        var temp = Path.Combine(parent, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        var aside = Path.Combine(parent, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.old");
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            bool replacing = Directory.Exists(full);
            if (replacing) Directory.Move(full, aside);
            try { Directory.Move(temp, full); }
            catch
            {
                if (replacing) Directory.Move(aside, full);
                throw;
            }
            if (replacing) TryDelete(aside);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
