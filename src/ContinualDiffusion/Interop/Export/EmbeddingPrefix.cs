namespace ContinualDiffusion.Interop.Export;

/// `--embedding-prefix PREFIX`: the embedding files an export names after each concept's prompt word (kohya,
/// merged-single-file) become PREFIX + word (`--embedding-prefix faces-`: `faces-v1.safetensors`, prompt word
/// `faces-v1`). Every run's tokens are `<v1>`, `<v2>`…, so without it the files of two runs collide in A1111's or
/// ComfyUI's one embeddings folder. The diffusers and PEFT folders key each embedding by its token instead, so the
/// prefix would name nothing there and is refused.
public static class EmbeddingPrefix
{
    public const int MaxLength = 64;

    /// The prefix to put before each stem ("" for none); an InputException (one line, naming the option) for a format
    /// without such files or for a prefix that is not 1 to MaxLength letters, digits, `_` or `-` not starting with `-`
    /// (the characters a stem keeps: a file name on every system, and a prompt word as EmbeddingWords and A1111 match it).
    public static string Validate(string? prefix, ExportFormat format)
    {
        if (prefix is null) return "";
        if (!format.WritesEmbeddingFilesBeside())
            throw new InputException($"--embedding-prefix: --format {format.Name()} keys each embedding by its token (<v1>), not by a file name; the prefix is for --format kohya and merged-single-file");
        if (prefix.Length is 0 or > MaxLength || prefix[0] == '-' || !prefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            var shown = new string(prefix.Take(MaxLength + 1).Select(c => char.IsControl(c) ? '?' : c).ToArray());
            throw new InputException($"--embedding-prefix '{shown}': expected 1 to {MaxLength} letters, digits, '_' or '-', not starting with '-' (it starts each embedding's file name and prompt word: --embedding-prefix faces- gives faces-v1)");
        }
        return prefix;
    }
}
