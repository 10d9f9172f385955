using System.Text.Json;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Configuration;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification;

/// The resumable state of a classification task in progress, `checkpoints/task-NNN.safetensors` in the run
/// (<see cref="ClassTaskTrainer.TrainingState"/>), written atomically with a checksum of its data and deleted when
/// the task commits. It is bound to what it was made with (task, method, backbone, options, training images) by an
/// identity string in its metadata, so `--resume` never continues a task with something else.
public sealed class ClassifyTaskCheckpoint(string path, string identity)
{
    private const string IdentityKey = "identity";

    public string Path { get; } = System.IO.Path.GetFullPath(path);
    public bool Exists => File.Exists(Path);

    /// What a checkpoint of this task must have been made with, including the state of the task before it (null for
    /// task 1), so a run rebuilt in the same folder never continues another run's interrupted task.
    public static string Identity(int task, string method, string backboneSha256, ClassifyOptions options, IReadOnlyList<int> classes, string imagesSha256,
        string? previousStateSha256 = null) =>
        JsonSerializer.Serialize(new { task, method, backboneSha256, options = JsonConfig.Serialize(options), classes, imagesSha256, previousStateSha256 });

    public void Save(IReadOnlyDictionary<string, Tensor> state)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        SafeTensorsFile.Save(Path, state, new Dictionary<string, string> { [IdentityKey] = identity }, checksum: true);
    }

    /// The saved state (owned by the caller), after checking it was made for this task with the same everything and
    /// that its data is intact; `option` names the flag that asked for it in errors.
    public Dictionary<string, Tensor> Load(int task, string option = "--resume")
    {
        if (!Exists) throw new InputException($"{option}: task {task} has no checkpoint to resume ({Path} not found)");
        using var file = SafeTensorsFile.Open(Path);
        if (!file.Metadata.TryGetValue(IdentityKey, out var saved) || saved != identity)
            throw new InputException($"{option}: {Path} was made with another method, backbone, options or images; rerun with the same ones, or without {option} to start the task over");
        if (!file.Metadata.ContainsKey(SafeTensorsFile.ChecksumKey))
            throw new InputException($"{Path}: has no data checksum (not a checkpoint cdiff wrote)");
        file.VerifyChecksum();
        return file.ReadAll();
    }

    /// Removes the checkpoint and its folder if that is left empty (after the task commits; a failure to delete
    /// leaves a file a later task ignores, and is not an error).
    public void Delete()
    {
        try
        {
            if (Exists) File.Delete(Path);
            var dir = System.IO.Path.GetDirectoryName(Path)!;
            if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
