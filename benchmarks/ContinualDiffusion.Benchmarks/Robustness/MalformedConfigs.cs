using System.Text.Json.Nodes;

namespace ContinualDiffusion.Benchmarks.Robustness;

/// Damaged training configs (`--config`), model configs (a model folder's config.json files and tokenizer) and run
/// manifests, each made from the valid file by one edit.
public static class MalformedConfigs
{
    public sealed record TextCase(string Name, Expectation Expect, string Text);

    /// `cdiff train --config FILE`: every case keeps steps and rank tiny unless they are the broken value.
    public static IReadOnlyList<TextCase> TrainConfigs() =>
    [
        new("not-json", Expectation.Refuse, "steps: 2"),
        new("empty-file", Expectation.Refuse, ""),
        new("array", Expectation.Refuse, "[2, 2]"),
        new("null", Expectation.Refuse, "null"),
        new("steps-string", Expectation.Refuse, """{"steps": "many", "rank": 2}"""),
        new("steps-negative", Expectation.Refuse, """{"steps": -5, "rank": 2}"""),
        new("steps-float", Expectation.Refuse, """{"steps": 2.5, "rank": 2}"""),
        new("steps-huge", Expectation.Refuse, """{"steps": 1e999, "rank": 2}"""),
        new("rank-zero", Expectation.Refuse, """{"steps": 2, "rank": 0}"""),
        new("rank-larger-than-layer", Expectation.Refuse, """{"steps": 2, "rank": 100000}"""),
        new("lr-nan", Expectation.Refuse, """{"steps": 2, "rank": 2, "learning_rate": NaN}"""),
        new("lr-negative", Expectation.Refuse, """{"steps": 2, "rank": 2, "learning_rate": -1}"""),
        new("lambda-infinite", Expectation.Refuse, """{"steps": 2, "rank": 2, "lambda": Infinity}"""),
        new("unknown-key", Expectation.Refuse, """{"steps": 2, "rank": 2, "learning_rat": 0.001}"""),
        new("method-unknown", Expectation.Refuse, """{"steps": 2, "rank": 2, "method": "dreambooth"}"""),
        new("templates-empty", Expectation.Refuse, """{"steps": 2, "rank": 2, "prompt_templates": []}"""),
        new("templates-without-slot", Expectation.Refuse, """{"steps": 2, "rank": 2, "prompt_templates": ["a photo"]}"""),
        new("batch-zero", Expectation.Refuse, """{"steps": 2, "rank": 2, "batch_size": 0}"""),
        new("nested-object", Expectation.Refuse, """{"steps": {"value": 2}, "rank": 2}"""),
        new("max-pixels-negative", Expectation.Refuse, """{"steps": 2, "rank": 2, "max_image_pixels": -1}"""),
        new("scheduler-unknown", Expectation.Refuse, """{"steps": 2, "rank": 2, "lr_scheduler": "step"}"""),
        new("warmup-with-constant", Expectation.Refuse, """{"steps": 2, "rank": 2, "lr_warmup_steps": 1}"""),
        new("accumulation-zero", Expectation.Refuse, """{"steps": 2, "rank": 2, "gradient_accumulation_steps": 0}"""),
        new("snr-gamma-negative", Expectation.Refuse, """{"steps": 2, "rank": 2, "snr_gamma": -5}"""),
        new("noise-offset-nan", Expectation.Refuse, """{"steps": 2, "rank": 2, "noise_offset": NaN}"""),
        new("aspect-buckets-string", Expectation.Refuse, """{"steps": 2, "rank": 2, "aspect_buckets": "yes"}"""),
        new("bucket-step-12", Expectation.Refuse, """{"steps": 2, "rank": 2, "aspect_buckets": true, "bucket_step": 12}"""),
        new("bucket-step-not-dividing", Expectation.Refuse, """{"steps": 2, "rank": 2, "aspect_buckets": true, "bucket_step": 24}"""),
        new("bucket-step-default-at-32px", Expectation.Refuse, """{"steps": 2, "rank": 2, "aspect_buckets": true}"""),
        new("bucket-step-huge", Expectation.Refuse, """{"steps": 2, "rank": 2, "aspect_buckets": true, "bucket_step": 2147483640}"""),
    ];

    /// Edits of the sd-tiny model folder for `cdiff sample --model DIR`: (relative file, case).
    public static IReadOnlyList<(string File, TextCase Case)> ModelFiles(string model)
    {
        string unet = File.ReadAllText(Path.Combine(model, "unet", "config.json"));
        string vae = File.ReadAllText(Path.Combine(model, "vae", "config.json"));
        string scheduler = File.ReadAllText(Path.Combine(model, "scheduler", "scheduler_config.json"));
        string text = File.ReadAllText(Path.Combine(model, "text_encoder", "config.json"));
        string Edit(string json, Action<JsonObject> edit)
        {
            var o = (JsonObject)JsonNode.Parse(PythonNaNs(json))!;
            edit(o);
            return o.ToJsonString();
        }
        return
        [
            ("unet/config.json", new("unet-not-json", Expectation.Refuse, unet[..(unet.Length / 2)])),
            ("unet/config.json", new("unet-missing-block-out-channels", Expectation.Refuse, Edit(unet, o => o.Remove("block_out_channels")))),
            ("unet/config.json", new("unet-channels-string", Expectation.Refuse, Edit(unet, o => o["block_out_channels"] = "32,64"))),
            ("unet/config.json", new("unet-channels-negative", Expectation.Refuse, Edit(unet, o => o["block_out_channels"] = new JsonArray(-32, 64)))),
            ("unet/config.json", new("unet-cross-attention-mismatch", Expectation.Refuse, Edit(unet, o => o["cross_attention_dim"] = 7))),
            ("unet/config.json", new("unet-unknown-key", Expectation.Refuse, Edit(unet, o => o["bogus_option"] = 1))),
            ("unet/config.json", new("unet-array", Expectation.Refuse, "[]")),
            ("vae/config.json", new("vae-latent-channels-zero", Expectation.Refuse, Edit(vae, o => o["latent_channels"] = 0))),
            ("vae/config.json", new("vae-empty", Expectation.Refuse, "")),
            ("text_encoder/config.json", new("text-hidden-size-string", Expectation.Refuse, Edit(text, o => o["hidden_size"] = "big"))),
            ("text_encoder/config.json", new("text-layers-huge", Expectation.Refuse, Edit(text, o => o["num_hidden_layers"] = 100000))),
            ("scheduler/scheduler_config.json", new("scheduler-timesteps-zero", Expectation.Refuse, Edit(scheduler, o => o["num_train_timesteps"] = 0))),
            ("scheduler/scheduler_config.json", new("scheduler-beta-end-below-start", Expectation.Refuse, Edit(scheduler, o => o["beta_end"] = 1e-9))),
            ("scheduler/scheduler_config.json", new("scheduler-unknown-prediction", Expectation.Refuse, Edit(scheduler, o => o["prediction_type"] = "x0"))),
            ("tokenizer/vocab.json", new("vocab-not-json", Expectation.Refuse, "{\"a\": ")),
            ("tokenizer/vocab.json", new("vocab-empty-object", Expectation.Refuse, "{}")),
            ("tokenizer/merges.txt", new("merges-garbage", Expectation.Refuse, "#version: 0.2\nonly-one-token\n\u0000\u0001\n")),
            ("model_index.json", new("model-index-not-json", Expectation.Refuse, "{")),
        ];
    }

    /// Edits of a run's manifest.json (a run with task 1 finished).
    public static IReadOnlyList<TextCase> Manifests(string manifestJson)
    {
        string Edit(Action<JsonObject> edit)
        {
            var o = (JsonObject)JsonNode.Parse(manifestJson)!;
            edit(o);
            return o.ToJsonString();
        }
        JsonObject Task1(JsonObject o) => (JsonObject)o["tasks"]!.AsArray()[0]!;
        return
        [
            new("not-json", Expectation.Refuse, manifestJson[..(manifestJson.Length / 2)]),
            new("empty", Expectation.Refuse, ""),
            new("array", Expectation.Refuse, "[]"),
            new("missing-tasks", Expectation.Refuse, Edit(o => o.Remove("tasks"))),
            new("missing-base-model", Expectation.Refuse, Edit(o => o.Remove("base_model"))),
            new("unknown-key", Expectation.Refuse, Edit(o => o["extra"] = true)),
            new("format-version-99", Expectation.Refuse, Edit(o => o["format_version"] = 99)),
            new("task-number-string", Expectation.Refuse, Edit(o => Task1(o)["task"] = "one")),
            new("task-number-7", Expectation.Refuse, Edit(o => Task1(o)["task"] = 7)),
            new("duplicate-task", Expectation.Refuse, Edit(o => o["tasks"]!.AsArray().Add(Task1(o).DeepClone()))),
            new("adapter-hash-mismatch", Expectation.Refuse, Edit(o => Task1(o)["adapter_sha256"] = new string('0', 64))),
            new("adapter-size-mismatch", Expectation.Refuse, Edit(o => Task1(o)["adapter_bytes"] = 12)),
            new("adapter-file-missing", Expectation.Refuse, Edit(o => Task1(o)["adapter_file"] = "adapters/nope.safetensors")),
            new("adapter-file-outside-run", Expectation.Refuse, Edit(o => Task1(o)["adapter_file"] = "../../../../etc/passwd")),
            new("adapter-file-absolute", Expectation.Refuse, Edit(o => Task1(o)["adapter_file"] = "/etc/hostname")),
            new("base-model-hash-mismatch", Expectation.Refuse, Edit(o => o["base_model"]!["hash"] = new string('a', 64))),
            new("base-model-path-missing", Expectation.Refuse, Edit(o => o["base_model"]!["path"] = "/nonexistent/model")),
            new("token-renamed", Expectation.Refuse, Edit(o => Task1(o)["token"] = "<v9>")),
            new("rank-negative", Expectation.Refuse, Edit(o => Task1(o)["rank"] = -2)),
            new("method-unknown", Expectation.Refuse, Edit(o => o["method"] = "dreambooth")),
            // the task's training recipe (written by every task since 2026-12-08)
            new("recipe-empty", Expectation.Refuse, Edit(o => Task1(o)["training"] = new JsonObject())),
            new("recipe-batch-zero", Expectation.Refuse, Edit(o => Task1(o)["training"]!["batch_size"] = 0)),
            new("recipe-batch-null", Expectation.Refuse, Edit(o => Task1(o)["training"]!["batch_size"] = null)),
            new("recipe-scheduler-unknown", Expectation.Refuse, Edit(o => Task1(o)["training"]!["lr_scheduler"] = "step")),
            new("recipe-resolution-2^30", Expectation.Refuse, Edit(o => Task1(o)["training"]!["resolution"] = 1 << 30)),
            new("recipe-bucket-step-12", Expectation.Refuse, Edit(o => Task1(o)["training"]!["bucket_step"] = 12)),
            new("recipe-captioned-past-image-count", Expectation.Refuse, Edit(o => Task1(o)["training"]!["captioned_images"] = 1000)),
            new("recipe-templates-not-a-list", Expectation.Refuse, Edit(o => Task1(o)["training"]!["prompt_templates"] = "a photo of {}")),
        ];
    }

    private static string PythonNaNs(string json) => ContinualDiffusion.Configuration.PythonJson.QuoteNonFiniteNumbers(json);
}
