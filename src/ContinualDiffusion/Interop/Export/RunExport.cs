using System.Globalization;
using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Runs;

namespace ContinualDiffusion.Interop.Export;

/// `cdiff export`: a run's tasks 1..t in another tool's format. Order of work, so that bad input costs nothing:
/// manifest and `--tasks` (no tensor read), the output targets (refused if they exist, without `--overwrite`), the
/// base model's identity (hash, as `sample --run` checks it) and configs, then the adapters (SHA-256 against the
/// manifest, validated as one sequence against the layers the base model's UNet config has), then the writing.
/// The LoRA formats never load the base model's weights; the merged formats stream them tensor by tensor.
public static class RunExport
{
    /// The LoRA formats hold a sum of low-rank factors: exact for the methods whose tasks add up as LoRAs. MagMax's
    /// merge, Custom Diffusion's dense deltas and its closed-form merge are not such a sum: say which formats work.
    private static void RequireExportable(ContinualMethod method, ExportFormat format)
    {
        if (format.IsLora() && !(method.LowRank && method.Composition == PastComposition.Sum))
            throw new InputException($"--format {format.Name()}: a {method.Name} run's tasks are not a sum of LoRAs; use --format merged or merged-single-file");
    }

    public static ExportResult Export(ExportRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Rank is { } r && !request.Format.IsLora())
            throw new InputException($"--rank {r}: only the LoRA formats (kohya, diffusers, peft) take a rank; --format {request.Format.Name()} merges the exact deltas");
        string prefix = EmbeddingPrefix.Validate(request.EmbeddingPrefix, request.Format);
        var run = new RunDirectory(request.RunDir);
        var manifest = run.ReadManifest();
        RequireExportable(ContinualMethod.Parse(manifest.Method, $"{run.ManifestPath}: method"), request.Format);
        int last = TaskSelection.LastTask(request.Tasks, manifest.Tasks.Count);
        var entries = manifest.Tasks.OrderBy(t => t.Task).Take(last).ToList();
        var stems = entries.Select(e => prefix + ConceptEmbedding.StemOf(e.Token)).ToList();
        var outPath = Path.GetFullPath(request.OutPath);
        ExportOutput.RequireNotProtected(outPath, [(run.Root, "the run"), (Environment.CurrentDirectory, "the current folder")]);
        var targets = Targets(request.Format, outPath, stems);
        ExportOutput.RequireWritable(targets, request.Overwrite);

        using var source = RunModel.OpenBaseModel(manifest, request.ModelOverride, request.SingleFileOverride, run.ManifestPath);
        foreach (var target in targets) ExportOutput.RequireNotProtected(target, [(source.Path, "the base model")]);
        if (request.Format == ExportFormat.Merged && source.Folder is null)
            throw new InputException($"--format merged: the run's base model {source.Path} is a single file; merged export writes a diffusers folder and needs a diffusers-folder base model (use --format merged-single-file, or a LoRA with --format kohya, instead)");
        var model = ExportBaseModel.Of(source);
        var layers = CrossAttentionLayers.KeyValue(model.Unet);
        var expected = new AdapterExpectation(layers.ToDictionary(l => l.Name, l => l.Shape, StringComparer.Ordinal)) { TokenHiddenSize = model.TextHiddenSize };
        var adapters = RunModel.LoadAdapters(run, manifest, expected, last);
        try
        {
            var embeddings = adapters.Select(a => new ConceptEmbedding(a.Metadata.Task, a.Metadata.Token, a.TokenEmbedding) { StemPrefix = prefix }).ToList();
            string taskRange = last == 1 ? "task 1" : $"tasks 1..{last}";
            var messages = new List<string>();
            if (request.Format == ExportFormat.MergedSingleFile)
            {
                var written = WriteMergedSingleFile(outPath, source, model, adapters, layers.Select(l => l.Name).ToList(), manifest, run, taskRange, embeddings, messages);
                return new ExportResult(written, messages);
            }
            if (request.Format == ExportFormat.Merged)
            {
                IReadOnlyList<(string Token, long Id)> ids = [];
                using var deltas = RunWeightDeltas.Of(source, adapters);
                ExportOutput.WriteFolder(outPath, request.Overwrite, dir => ids = MergedModelExport.Write(dir, source.Folder!, adapters, layers.Select(l => l.Name).ToList(), deltas));
                messages.Add($"wrote {outPath}: the base model with {taskRange} merged ({manifest.Method}), a diffusers folder");
                foreach (var (token, id) in ids)
                    messages.Add($"{token}: write \"{token}\" in the prompt (token id {id}), e.g. cdiff sample --model {outPath} --prompt \"a photo of {token}\"");
                return new ExportResult([outPath], messages);
            }

            using var exact = StackedLora.Concatenate(adapters, layers.Select(l => l.Name));
            StackedLora? truncated = null;
            try
            {
                var lora = exact;
                if (request.Rank is { } rank)
                {
                    (truncated, var error) = exact.Truncate(rank);
                    lora = truncated;
                    messages.Add($"truncated the summed deltas (concatenated rank {exact.Rank}) by SVD to {error}");
                }
                var written = request.Format switch
                {
                    ExportFormat.Kohya => WriteKohya(outPath, lora, model, manifest, run, taskRange, embeddings, messages),
                    ExportFormat.Diffusers => WriteFolderFormat(outPath, request.Overwrite, dir => DiffusersLoraFile.Save(Path.Combine(dir, DiffusersLoraFile.FileName), lora), embeddings, messages,
                        $"wrote {outPath}: a diffusers LoRA of {taskRange} (rank {lora.Rank}); load it with pipe.load_lora_weights(\"{outPath}\")"),
                    ExportFormat.Peft => WriteFolderFormat(outPath, request.Overwrite, dir => PeftAdapter.Save(dir, lora, source.Path), embeddings, messages,
                        $"wrote {outPath}: a PEFT LoRA adapter for the UNet of {taskRange} (rank {lora.Rank}); load it with PeftModel.from_pretrained(pipe.unet, \"{outPath}\")"),
                    _ => throw new ArgumentOutOfRangeException(nameof(request), request.Format, "unknown format"),
                };
                return new ExportResult(written, messages);
            }
            finally
            {
                truncated?.Dispose();
            }
        }
        finally
        {
            foreach (var a in adapters) a.Dispose();
        }
    }

    /// Every path the export will create, checked before anything is read: the kohya or merged single file and the
    /// embedding files beside it, or the folder.
    public static IReadOnlyList<string> Targets(ExportFormat format, string outPath, IEnumerable<string> stems)
    {
        if (!format.WritesEmbeddingFilesBeside()) return [outPath];
        string what = format == ExportFormat.Kohya ? "a kohya LoRA" : "a merged single-file checkpoint";
        if (!outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new InputException($"--out {outPath}: {what} is one .safetensors file; name it NAME.safetensors");
        if (Directory.Exists(outPath))
            throw new InputException($"--out {outPath}: is a folder; {what} is one .safetensors file");
        var dir = Path.GetDirectoryName(outPath)!;
        var targets = new List<string> { outPath };
        foreach (var stem in stems)
        {
            var embedding = Path.Combine(dir, stem + ".safetensors");
            if (string.Equals(embedding, outPath, StringComparison.Ordinal))
                throw new InputException($"--out {outPath}: that is the name of concept embedding file {stem}.safetensors; choose another file name");
            targets.Add(embedding);
        }
        return targets;
    }

    private static IReadOnlyList<string> WriteKohya(string outPath, StackedLora lora, ExportBaseModel model, RunManifest manifest, RunDirectory run,
        string taskRange, IReadOnlyList<ConceptEmbedding> embeddings, List<string> messages)
    {
        if (!outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new InputException($"--out {outPath}: a kohya LoRA is one .safetensors file; name it NAME.safetensors");
        // Existing targets were refused up front (RequireWritable) unless --overwrite; each file below replaces its target atomically.
        string title = Path.GetFileNameWithoutExtension(outPath);
        string tokens = string.Join(", ", embeddings.Select(e => e.Token));
        string description = $"cdiff {manifest.Method} {taskRange} ({tokens}) of run {run.Root}";
        var extra = CdiffMetadata(manifest, taskRange, embeddings);
        var loraExtra = new Dictionary<string, string>(extra, StringComparer.Ordinal);
        if (embeddings.Count == 1) // one task is one training: kohya's ss_* keys say how it was trained
            foreach (var (k, v) in KohyaTrainingMetadata.Of(manifest.Tasks.Single(t => t.Task == embeddings[0].Task))) loraExtra[k] = v;
        KohyaLoraFile.Save(outPath, lora, KohyaLoraFile.Metadata(model, lora.Rank, title, description, embeddings.Select(e => e.Stem), loraExtra));
        var written = new List<string> { outPath };
        messages.Add($"wrote {outPath}: a kohya LoRA of {taskRange} (rank {lora.Rank}, alpha {lora.Rank}: scale 1), for {KohyaLoraFile.Architecture(model)}");
        written.AddRange(WriteA1111Embeddings(Path.GetDirectoryName(outPath)!, model, embeddings, extra, messages,
            (e, path) => $"{e.Token}: write \"{e.Stem}\" in the prompt ({path}; A1111/Forge: put it in embeddings/ and the LoRA in models/Lora/, prompt \"a photo of {e.Stem} <lora:{title}:1>\"; ComfyUI: \"embedding:{e.Stem}\")"));
        return written;
    }

    private static IReadOnlyList<string> WriteMergedSingleFile(string outPath, BaseModelSource source, ExportBaseModel model, IReadOnlyList<AdapterSet> adapters,
        IReadOnlyList<string> layers, RunManifest manifest, RunDirectory run, string taskRange, IReadOnlyList<ConceptEmbedding> embeddings, List<string> messages)
    {
        // Existing targets were refused up front (RequireWritable) unless --overwrite; each file below replaces its target atomically.
        string title = Path.GetFileNameWithoutExtension(outPath);
        string words = string.Join(", ", embeddings.Select(e => e.Stem));
        string description = $"cdiff {manifest.Method} {taskRange} merged into {Path.GetFileName(source.Path.TrimEnd('/', '\\'))} (run {run.Root}); " +
                             $"the concepts are the embeddings {string.Join(", ", embeddings.Select(e => e.Stem + ".safetensors"))}: prompt words {words}";
        var extra = CdiffMetadata(manifest, taskRange, embeddings);
        MergedSingleFileExport.Write(outPath, source, adapters, layers, MergedSingleFileExport.Metadata(model, title, description, embeddings.Select(e => e.Stem), extra));
        var written = new List<string> { outPath };
        string predictionHint = model.IsV2 ? $"; cdiff reads it with --prediction-type {model.PredictionType} (a single file does not say)" : "";
        messages.Add($"wrote {outPath}: the base model with {taskRange} merged ({manifest.Method}), an original-LDM single file ({ModelSpec.Architecture(model)}) for A1111/Forge/ComfyUI{predictionHint}");
        written.AddRange(WriteA1111Embeddings(Path.GetDirectoryName(outPath)!, model, embeddings, extra, messages,
            (e, path) => $"{e.Token}: write \"{e.Stem}\" in the prompt ({path}; A1111/Forge: put it in embeddings/ and the checkpoint in models/Stable-diffusion/, prompt \"a photo of {e.Stem}\"; ComfyUI: \"embedding:{e.Stem}\"; cdiff: sample --model {outPath} --embedding {path})"));
        return written;
    }

    /// One A1111-style embedding file per concept in `dir` (`<stem>.safetensors`, `emb_params` [1, D], modelspec and
    /// cdiff metadata), and the line telling the user what to type (`line(concept, path)`).
    private static IReadOnlyList<string> WriteA1111Embeddings(string dir, ExportBaseModel model, IReadOnlyList<ConceptEmbedding> embeddings,
        IReadOnlyDictionary<string, string> extra, List<string> messages, Func<ConceptEmbedding, string, string> line)
    {
        var written = new List<string>();
        foreach (var e in embeddings)
        {
            var path = EmbeddingFiles.A1111Path(dir, e);
            var metadata = new Dictionary<string, string>(extra)
            {
                ["format"] = "pt",
                ["modelspec.sai_model_spec"] = ModelSpec.Version,
                ["modelspec.architecture"] = ModelSpec.Architecture(model) + "/textual-inversion",
                ["modelspec.implementation"] = ModelSpec.StabilityAi,
                ["modelspec.title"] = e.Stem,
                ["modelspec.trigger_phrase"] = e.Stem,
                ["cdiff_token"] = e.Token,
            };
            EmbeddingFiles.WriteA1111(path, e, metadata);
            written.Add(path);
            messages.Add(line(e, path));
        }
        return written;
    }

    private static IReadOnlyList<string> WriteFolderFormat(string outPath, bool overwrite, Action<string> writeLora, IReadOnlyList<ConceptEmbedding> embeddings,
        List<string> messages, string summary)
    {
        ExportOutput.WriteFolder(outPath, overwrite, dir =>
        {
            writeLora(dir);
            foreach (var e in embeddings) EmbeddingFiles.WriteDiffusers(EmbeddingFiles.DiffusersPath(dir, e), e);
        });
        messages.Add(summary);
        foreach (var e in embeddings)
            messages.Add($"{e.Token}: write \"{e.Token}\" in the prompt after pipe.load_textual_inversion(\"{Path.GetDirectoryName(EmbeddingFiles.DiffusersPath(outPath, e))}\")");
        return [outPath];
    }

    private static Dictionary<string, string> CdiffMetadata(RunManifest manifest, string taskRange, IReadOnlyList<ConceptEmbedding> embeddings) => new(StringComparer.Ordinal)
    {
        [ExportOutput.ExportMetadataKey] = taskRange,
        ["cdiff_tasks"] = embeddings.Count.ToString(CultureInfo.InvariantCulture),
        ["cdiff_tokens"] = string.Join(",", embeddings.Select(e => e.Token)),
        ["cdiff_method"] = manifest.Method,
        ["cdiff_base_model_hash"] = manifest.BaseModel.Hash,
    };
}
