using System.Text.Json;
using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Interop;
using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Runs;

/// A run is bound to its base model's identity hash, a diffusers folder or an original-LDM single file alike; a single
/// file's options are recorded so the run reopens it as task 1 did. Manifests written before single files were read
/// (base_model with path and hash only) load unchanged, and a folder run still writes that form. Nothing here builds
/// a model: opening, hashing and the manifest read headers and files only.
public class BaseModelBindingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-binding-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private RunDirectory Run => new(Path.Combine(_dir, "run"));

    /// A manifest as cdiff wrote it before single files (format_version 1, base_model {path, hash}), with one task.
    private string WriteOldManifest(string modelPath, string hash)
    {
        var run = Run;
        Directory.CreateDirectory(run.AdaptersDir);
        File.WriteAllBytes(run.AdapterPath(1), [1, 2, 3]);
        string sha = RunDirectory.Sha256File(run.AdapterPath(1));
        File.WriteAllText(run.ManifestPath, $$"""
            {
              "format_version": 1,
              "base_model": {
                "path": {{JsonSerializer.Serialize(modelPath)}},
                "hash": "{{hash}}"
              },
              "method": "clora",
              "tasks": [
                {
                  "task": 1,
                  "token": "<v1>",
                  "token_id": 49408,
                  "adapter_file": "adapters/task-001.safetensors",
                  "adapter_sha256": "{{sha}}",
                  "adapter_bytes": 3,
                  "image_set_hash": "abc",
                  "image_count": 3,
                  "method": "clora",
                  "rank": 4,
                  "lambda": 100000000,
                  "steps": 10,
                  "learning_rate": 0.0005,
                  "seed": 0,
                  "final_loss": 0.1,
                  "wall_time_seconds": 1.5,
                  "finished_utc": "2026-01-01T00:00:00+00:00"
                }
              ]
            }
            """);
        return run.ManifestPath;
    }

    private RunManifest WriteManifest(BaseModelInfo baseModel)
    {
        var manifest = new RunManifest { BaseModel = baseModel, Method = "clora", Tasks = [] };
        Run.WriteManifest(manifest);
        return Run.ReadManifest();
    }

    [Fact]
    public void A_manifest_from_before_single_files_loads_binds_to_its_folder_and_is_written_back_in_the_same_form()
    {
        string hash = DiffusersFolder.Open(Fixture.SdTiny).ComputeIdentityHash();
        var path = WriteOldManifest(Fixture.SdTiny, hash);

        var manifest = Run.ReadManifest();
        Assert.Equal(new BaseModelInfo(Fixture.SdTiny, hash), manifest.BaseModel);
        Assert.Null(manifest.BaseModel.SingleFile);
        Assert.Equal("<v1>", Assert.Single(manifest.Tasks).Token);

        using (var source = RunModel.OpenBaseModel(manifest, null, null, path))
        {
            Assert.NotNull(source.Folder);
            Assert.Null(source.SingleFile);
            Assert.Equal(Fixture.SdTiny, source.Path);
            Assert.Equal(32, source.NativeResolution()); // sd-tiny: sample_size 16 × VAE factor 2
        }

        Run.WriteManifest(manifest);
        var written = JsonNode.Parse(File.ReadAllText(path))!["base_model"]!.AsObject();
        Assert.Equal(["hash", "path"], written.Select(p => p.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Single_file_options_for_a_run_on_a_folder_are_refused()
    {
        var manifest = WriteManifest(new BaseModelInfo(Fixture.SdTiny, DiffusersFolder.Open(Fixture.SdTiny).ComputeIdentityHash()));
        var e = Assert.ThrowsAny<InputException>(() =>
            RunModel.OpenBaseModel(manifest, null, new SingleFileOptions { PredictionType = "epsilon" }, Run.ManifestPath));
        Assert.Contains("--prediction-type", e.Message);
        Assert.Contains("describe a single-file checkpoint", e.Message);
    }

    [Fact]
    public void A_single_file_run_records_its_options_and_reopens_the_file_with_them()
    {
        var (model, yaml) = Sd1SingleFile.CopyTo(Path.Combine(_dir, "model"));
        BaseModelInfo info;
        using (var given = BaseModelSource.Open(model, new SingleFileOptions { OriginalConfigPath = yaml }))
        {
            Assert.NotNull(given.SingleFile);
            Assert.Equal(128, given.NativeResolution()); // the yaml's image_size 16 × VAE factor 8
            info = BaseModelInfo.Of(given, given.ComputeIdentityHash());
        }
        Assert.Equal(model, info.Path);
        Assert.Equal(new SingleFileInfo(yaml, RunDirectory.Sha256File(yaml), null), info.SingleFile);

        var manifest = WriteManifest(info);
        Assert.Equal(info, manifest.BaseModel);
        var single = JsonNode.Parse(File.ReadAllText(Run.ManifestPath))!["base_model"]!["single_file"]!.AsObject();
        Assert.Equal(["original_config", "original_config_sha256", "prediction_type"], single.Select(p => p.Key).Order(StringComparer.Ordinal));

        using (var reopened = RunModel.OpenBaseModel(manifest, null, null, Run.ManifestPath))
        {
            Assert.Equal(yaml, reopened.SingleFile!.Options.OriginalConfigPath);
            Assert.Equal(info.Hash, reopened.ComputeIdentityHash());
        }

        // The yaml is part of the model's identity: the same file without it is another model to the run.
        using (var withoutYaml = BaseModelSource.Open(model))
            Assert.NotEqual(info.Hash, withoutYaml.ComputeIdentityHash());
    }

    [Fact]
    public void A_single_file_run_refuses_a_changed_file_and_a_changed_yaml_and_asks_for_a_moved_yaml()
    {
        var (model, yaml) = Sd1SingleFile.CopyTo(Path.Combine(_dir, "model"));
        RunManifest manifest;
        using (var given = BaseModelSource.Open(model, new SingleFileOptions { OriginalConfigPath = yaml }))
            manifest = WriteManifest(BaseModelInfo.Of(given, given.ComputeIdentityHash()));
        string path = Run.ManifestPath;

        var moved = Path.Combine(_dir, "elsewhere.yaml");
        File.Move(yaml, moved);
        var e = Assert.ThrowsAny<InputException>(() => RunModel.OpenBaseModel(manifest, null, null, path));
        Assert.Contains(yaml, e.Message);
        Assert.Contains("--original-config FILE", e.Message);
        using (var relocated = RunModel.OpenBaseModel(manifest, null, new SingleFileOptions { OriginalConfigPath = moved }, path))
            Assert.Equal(moved, relocated.SingleFile!.Options.OriginalConfigPath);
        File.Move(moved, yaml);

        var original = File.ReadAllBytes(yaml);
        File.AppendAllText(yaml, "# edited after training\n");
        e = Assert.ThrowsAny<InputException>(() => RunModel.OpenBaseModel(manifest, null, null, path));
        Assert.Contains("changed since the run was trained", e.Message);
        File.WriteAllBytes(yaml, original);

        // Another prediction type is another model, whatever the weights.
        e = Assert.ThrowsAny<InputException>(() => RunModel.OpenBaseModel(manifest, null, new SingleFileOptions { PredictionType = "v_prediction" }, path));
        Assert.Contains("not the base model the run was trained on", e.Message);

        Sd1SingleFile.FlipAByteOfTheLastTensor(model);
        e = Assert.ThrowsAny<InputException>(() => RunModel.OpenBaseModel(manifest, null, null, path));
        Assert.Contains(path, e.Message);
        Assert.Contains(model, e.Message);
        Assert.Contains("not the base model the run was trained on", e.Message);

        var status = RunStatus.Inspect(Run);
        Assert.Contains(status.Problems, p => p.Contains("is not the model the run was trained on"));
    }

    [Theory]
    [InlineData("unknown prediction type", "prediction_type 'sample'")]
    [InlineData("yaml without its hash", "original_config_sha256")]
    [InlineData("hash that is not a SHA-256", "original_config_sha256")]
    [InlineData("not an object", "not a valid cdiff manifest")]
    public void A_damaged_single_file_entry_is_refused_naming_the_manifest(string damage, string expected)
    {
        WriteManifest(new BaseModelInfo("/models/sd.safetensors", new string('a', 64), new SingleFileInfo("/models/v1-inference.yaml", new string('b', 64), "epsilon")));
        var o = JsonNode.Parse(File.ReadAllText(Run.ManifestPath))!.AsObject();
        var single = o["base_model"]!["single_file"]!.AsObject();
        switch (damage)
        {
            case "unknown prediction type": single["prediction_type"] = "sample"; break;
            case "yaml without its hash": single["original_config_sha256"] = null; break;
            case "hash that is not a SHA-256": single["original_config_sha256"] = "not-a-hash"; break;
            case "not an object": o["base_model"]!["single_file"] = "v1-inference.yaml"; break;
        }
        File.WriteAllText(Run.ManifestPath, o.ToJsonString());
        var e = Assert.ThrowsAny<InputException>(() => Run.ReadManifest());
        Assert.Contains(Run.ManifestPath, e.Message);
        Assert.Contains(expected, e.Message);
    }
}
