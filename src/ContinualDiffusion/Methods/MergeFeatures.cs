using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Methods;

/// The text features Custom Diffusion's closed-form merge works on: the text encoder's output rows (what every
/// cross-attention's key/value projection reads) for
/// - the regularisation captions: every token after the start token, end token included (the reference's `[:, 1:]`);
/// - each concept's target prompts: the concept token's row (<see cref="ConceptToken"/>, what the merge constrains),
///   or every row from the concept token to the end token (<see cref="Concept"/>, what the text anchor holds). The
///   words before the token ("a photo of") give the same features in every prompt (the encoder is causal), so they
///   constrain nothing about the concept — the reference drops them too (its `[:, 4:]`).
/// Prompts are encoded unpadded, as in the reference.
public static class MergeFeatures
{
    /// The concept's target prompts ("{}" is the token): the bare token, and the prompt it was trained with. The
    /// reference uses "<new1> category" and "photo of a <new1> category"; cdiff's prompts omit the class noun.
    public static readonly IReadOnlyList<string> TargetTemplates = ["{}", "a photo of {}"];

    /// Rows <see cref="ConceptToken"/> gives per concept: the token's row in each target template. The end token's
    /// row is left out: on a narrow text encoder (the Fashion model's 32 features) every prompt's end-token features
    /// are nearly alike, so constraining a concept's end-token outputs moves every prompt's. Measured (3 tasks,
    /// validation seed 100, 50 samples): with end-token rows the merge drew both concepts as sandals from task 2 on
    /// (A after task 3: 2.7%), with the token rows only it did not (A 14%). Over the benchmark's 5 tasks and seeds
    /// 0–2 the token-only form fails too (A 15.3%, noise from the second concept on): neither form makes the merge
    /// work on this model (see the README's method comparison).
    public const int RowsPerConcept = 2;

    /// The shipped captions (configs/methods/regularization-captions.txt next to the binaries).
    public static string DefaultCaptionsPath => Path.Combine(AppContext.BaseDirectory, "configs", "methods", "regularization-captions.txt");

    /// Non-empty lines not starting with '#'.
    public static IReadOnlyList<string> ReadCaptions(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: regularisation captions not found (custom-diffusion-merge and anchored-lora need them)");
        var captions = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (captions.Count == 0) throw new InputException($"{path}: holds no captions");
        return captions;
    }

    /// [rows, hidden] features of the captions' tokens after the start token.
    public static Tensor Regularization(StableDiffusion model, IReadOnlyList<string> captions) =>
        Rows(model, captions.Select(c => (c, (long?)null)));

    /// [rows, hidden] features of `token`'s target prompts, from the token on.
    public static Tensor Concept(StableDiffusion model, string token) => Rows(model, Targets(model, token), tokenOnly: false);

    /// [RowsPerConcept, hidden] features of `token`'s own row in each target prompt.
    public static Tensor ConceptToken(StableDiffusion model, string token) => Rows(model, Targets(model, token), tokenOnly: true);

    private static IEnumerable<(string Prompt, long? FromToken)> Targets(StableDiffusion model, string token)
    {
        if (!model.Tokenizer.TryGetConceptTokenId(token, out long id))
            throw new ArgumentException($"{token} is not a concept token of this model", nameof(token));
        return TargetTemplates.Select(t => (t.Replace("{}", token), (long?)id));
    }

    private static Tensor Rows(StableDiffusion model, IEnumerable<(string Prompt, long? FromToken)> prompts, bool tokenOnly = false)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var rows = new List<Tensor>();
        var tokenizer = model.Tokenizer;
        foreach (var (prompt, fromToken) in prompts)
        {
            var body = tokenizer.EncodeUnpadded(prompt).Take(tokenizer.ModelMaxLength - 2).ToList();
            var ids = new List<long> { tokenizer.BosId };
            ids.AddRange(body);
            ids.Add(tokenizer.EosId);
            int start = fromToken is { } t ? ids.IndexOf(t) : 1;
            if (start < 1) throw new ArgumentException($"\"{prompt}\" does not contain its concept token");
            var input = torch.tensor(ids.ToArray(), dtype: ScalarType.Int64).unsqueeze(0).to(model.Device);
            using var output = model.TextEncoder.Encode(input);
            rows.Add(output.LastHiddenState[0].slice(0, start, tokenOnly ? start + 1 : ids.Count, 1).to(ScalarType.Float32));
        }
        return torch.cat(rows, 0).MoveToOuterDisposeScope();
    }
}
