using System.Text.Json.Nodes;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Pretraining;

/// Writes a trained base model as a complete diffusers folder (what `StableDiffusionPipeline.save_pretrained`
/// writes, loadable by `StableDiffusion.Load` and by diffusers) plus cdiff-pretrain.json. The folder appears
/// atomically: everything is written into a temporary sibling, which is then renamed into place, so an
/// interrupted run never leaves a half model where a later run would reuse it.
internal static class PretrainedModelWriter
{
    public static void Write(string outDir, PretrainArchitecture arch, int resolution, StableDiffusion model, double scalingFactor,
        PretrainRecord record, string tokenizerSource)
    {
        var target = Path.GetFullPath(outDir);
        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            WriteComponents(temp, arch, resolution, model, scalingFactor, tokenizerSource);
            File.WriteAllText(Path.Combine(temp, PretrainRecord.FileName), record.ToJson());
            Replace(target, temp);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void WriteComponents(string root, PretrainArchitecture arch, int resolution, StableDiffusion model, double scalingFactor, string tokenizerSource)
    {
        Json(Path.Combine(root, "model_index.json"), ModelIndex());
        Json(Path.Combine(root, "unet", "config.json"), arch.UnetJson(resolution / model.VaeScaleFactor));
        Weights(Path.Combine(root, "unet", "diffusion_pytorch_model.safetensors"), model.Unet);
        Json(Path.Combine(root, "vae", "config.json"), arch.VaeJson(resolution, scalingFactor));
        Weights(Path.Combine(root, "vae", "diffusion_pytorch_model.safetensors"), model.Vae);
        Json(Path.Combine(root, "text_encoder", "config.json"), arch.TextEncoderJson());
        Weights(Path.Combine(root, "text_encoder", "model.safetensors"), model.TextEncoder);
        Json(Path.Combine(root, "scheduler", "scheduler_config.json"), arch.SchedulerJson());
        var tokenizer = Directory.CreateDirectory(Path.Combine(root, "tokenizer")).FullName;
        if (!File.Exists(Path.Combine(tokenizerSource, "vocab.json")))
            throw new InvalidOperationException($"{tokenizerSource}: CLIP tokenizer files missing next to the binaries (configs/tokenizer/clip)");
        foreach (var f in Directory.EnumerateFiles(tokenizerSource))
            File.Copy(f, Path.Combine(tokenizer, Path.GetFileName(f)));
    }

    private static JsonObject ModelIndex() => new()
    {
        ["_class_name"] = "StableDiffusionPipeline",
        ["_diffusers_version"] = "0.27.2",
        ["feature_extractor"] = new JsonArray(null, null),
        ["image_encoder"] = new JsonArray(null, null),
        ["requires_safety_checker"] = false,
        ["safety_checker"] = new JsonArray(null, null),
        ["scheduler"] = new JsonArray("diffusers", "DDIMScheduler"),
        ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
        ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    };

    private static void Json(string path, JsonObject content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static void Weights(string path, nn.Module module)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var scope = torch.NewDisposeScope(); // the state dict's detached CPU copies
        var state = module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
        SafeTensorsFile.Save(path, state, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// Moves the finished folder into place; an existing one (only with --force) is moved aside first and
    /// deleted after, so at every moment either the old or the new model is at `target`.
    private static void Replace(string target, string temp)
    {
        string? old = null;
        if (Directory.Exists(target))
        {
            old = $"{temp}.old";
            Directory.Move(target, old);
        }
        Directory.Move(temp, target);
        if (old is not null) TryDelete(old);
    }

    private static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
