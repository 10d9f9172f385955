using ContinualDiffusion.Models;
using ContinualDiffusion.Text;

namespace ContinualDiffusion.Interop.Import;

/// `sample --lora FILE[:SCALE] … --embedding FILE[:WORD] …` on a loaded model (a plain base model, or a run's model
/// with its own adapters already merged and its concept tokens added): every file is opened and checked first (keys,
/// shapes, words), then the LoRAs are merged into the UNet / text-encoder weights in place and the embeddings' tokens
/// added, once, before sampling. Returns one line per file for the log.
public static class ForeignAdditions
{
    public static IReadOnlyList<string> Apply(StableDiffusion model, IReadOnlyList<LoraSpec> loras, IReadOnlyList<EmbeddingSpec> embeddings, bool ignoreUnknownKeys)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loras);
        ArgumentNullException.ThrowIfNull(embeddings);
        var report = new List<string>();
        var opened = new List<ForeignLora>();
        var read = new List<ForeignEmbedding>();
        try
        {
            if (loras.Count > 0)
            {
                var targets = LoraTargets.Of(model);
                foreach (var spec in loras) opened.Add(ForeignLora.Open(spec, targets, ignoreUnknownKeys));
            }
            var words = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var spec in embeddings)
            {
                var e = EmbeddingImport.Read(spec, model.TextEncoder.HiddenSize);
                read.Add(e);
                if (model.Tokenizer.EmbeddingWordConflict(e.Word, e.Count) is { } taken)
                    throw new InputException($"{e.Path}: '{taken}' is already a token of this model; name the embedding with {EmbeddingSpec.Option} FILE:WORD");
                foreach (var name in EmbeddingWords.VectorNames(e.Word, e.Count))
                    if (!words.Add(name))
                        throw new InputException($"{e.Path}: '{name}' is the word of another {EmbeddingSpec.Option} too; name one with FILE:WORD");
            }

            ForeignLoraApplier.Apply(model, opened);
            foreach (var lora in opened)
            {
                int te = lora.Plan.Modules.Count(m => m.Component == LoraComponent.TextEncoder);
                string skipped = lora.SkippedKeys.Count > 0 ? $"; skipped {lora.SkippedKeys.Count} unknown key(s), e.g. '{lora.SkippedKeys[0]}'" : "";
                report.Add($"LoRA {lora.Spec.Path} ({lora.Plan.Format.ToString().ToLowerInvariant()}): merged {lora.Plan.Modules.Count - te} UNet and {te} text-encoder module(s) at scale {lora.Spec.Scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}{skipped}");
            }
            foreach (var e in read)
            {
                var ids = EmbeddingImport.Add(model, e);
                report.Add($"embedding {e.Path}: write \"{e.Word}\" in the prompt ({e.Count} vector(s), token id(s) {ids[0]}{(ids.Count > 1 ? $"–{ids[^1]}" : "")})");
            }
            return report;
        }
        finally
        {
            foreach (var l in opened) l.Dispose();
            foreach (var e in read) e.Dispose();
        }
    }
}
