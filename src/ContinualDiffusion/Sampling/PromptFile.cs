namespace ContinualDiffusion.Sampling;

/// `cdiff sample --prompt-file FILE`: one prompt per line (kohya's `gen_img --from_file`, A1111's "prompts from file"),
/// blank lines and lines starting with `#` skipped, so that a run's concepts are all drawn with one model load.
public static class PromptFile
{
    public const int MaxBytes = 1 << 20;

    public static IReadOnlyList<string> Read(string path)
    {
        string text = BoundedTextFile.Read(path, MaxBytes, (problem, detail) => problem switch
        {
            BoundedTextFile.Problem.TooLarge => $"--prompt-file {path}: more than {MaxBytes:N0} bytes (one prompt per line expected)",
            BoundedTextFile.Problem.Unreadable => $"--prompt-file {path}: cannot read it ({detail})",
            _ => $"--prompt-file {path}: not UTF-8 text (one prompt per line expected)",
        });
        var prompts = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (prompts.Count == 0) throw new InputException($"--prompt-file {path}: no prompt in it (one per line; blank lines and lines starting with # are skipped)");
        return prompts;
    }
}
