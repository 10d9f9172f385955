using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;

namespace ContinualDiffusion.Checkpoints;

/// A Stable Diffusion base model as the user gives it (`--model`): a diffusers folder, or an original-LDM single
/// file opened with what its weights cannot say (SingleFileOptions). This is the one place that decides which form a
/// path is; training, sampling, the status check and the benchmark open, hash and size the model through it and
/// never branch on the form themselves. Opening validates (the folder's files; the single file's header, its yaml
/// and the architecture inferred from them) and keeps a single file open until disposed.
public sealed class BaseModelSource : IDisposable
{
    /// The folder or the file, as a full path.
    public string Path { get; }

    /// The diffusers folder, or null for a single file.
    public DiffusersFolder? Folder { get; }

    /// The opened single file (with its options, full paths), or null for a diffusers folder.
    public SingleFileCheckpoint? SingleFile { get; }

    private BaseModelSource(string path, DiffusersFolder? folder, SingleFileCheckpoint? singleFile)
    {
        Path = path; Folder = folder; SingleFile = singleFile;
    }

    /// Opens `path` as a single file when it is a file (or names a `.safetensors`/`.ckpt` that is not there, so the
    /// error says which file was expected), else as a diffusers folder. `singleFile` describes what a single file
    /// cannot say; a diffusers folder carries its own configs, so giving it options is an error.
    public static BaseModelSource Open(string path, SingleFileOptions? singleFile = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (NamesSingleFile(full))
        {
            var options = (singleFile ?? new SingleFileOptions()) with
            {
                OriginalConfigPath = singleFile?.OriginalConfigPath is { } yaml ? System.IO.Path.GetFullPath(yaml) : null,
            };
            return new BaseModelSource(full, null, SingleFileCheckpoint.Open(full, options));
        }
        var folder = DiffusersFolder.Open(full);
        if (singleFile is { IsEmpty: false })
            throw new InputException($"{full}: --original-config and --prediction-type describe a single-file checkpoint; a diffusers folder has its own configs");
        return new BaseModelSource(full, folder, null);
    }

    private static bool NamesSingleFile(string full) =>
        File.Exists(full) || (!Directory.Exists(full) && System.IO.Path.GetExtension(full).ToLowerInvariant() is ".safetensors" or ".ckpt");

    /// The SHA-256 a run is bound to (DiffusersFolder.ComputeIdentityHash, SingleFileCheckpoint.ComputeIdentityHash):
    /// a folder and a single file of the same weights are different models to a run.
    public string ComputeIdentityHash() => Folder?.ComputeIdentityHash() ?? SingleFile!.ComputeIdentityHash();

    /// The image side the model was trained at (diffusers' default sampling size): UNet sample_size × VAE factor.
    public int NativeResolution()
    {
        if (SingleFile is { } file) return file.Architecture.Unet.SampleSize * file.Architecture.Vae.VaeScaleFactor;
        return UNetConfig.Load(Folder!.UnetConfigPath).SampleSize * VaeConfig.Load(Folder.VaeConfigPath).VaeScaleFactor;
    }

    /// How messages and logs name the model.
    public override string ToString()
    {
        if (SingleFile is not { } file) return $"diffusers folder {Path}";
        var yaml = file.Options.OriginalConfigPath is { } y ? $"original config {y}" : "no original config";
        return $"single file {Path} ({yaml}, prediction type {file.Architecture.Scheduler.PredictionType})";
    }

    public void Dispose() => SingleFile?.Dispose();
}
