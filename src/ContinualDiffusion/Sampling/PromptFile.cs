using System.Text;

namespace ContinualDiffusion.Sampling;

/// `cdiff sample --prompt-file FILE`: one prompt per line (kohya's `gen_img --from_file`, A1111's "prompts from file"),
/// blank lines and lines starting with `#` skipped, so that a run's concepts are all drawn with one model load.
public static class PromptFile
{
    public const int MaxBytes = 1 << 20;

    public static IReadOnlyList<string> Read(string path)
    {
        byte[] bytes;
        try
        {
            // At most one byte past the limit: the file may be a pipe or /dev/zero, of no declared length.
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, FileOptions.SequentialScan);
            var buffer = new byte[MaxBytes + 1];
            int read = 0, n;
            while (read < buffer.Length && (n = stream.Read(buffer, read, buffer.Length - read)) > 0) read += n;
            if (read > MaxBytes) throw new InputException($"--prompt-file {path}: more than {MaxBytes:N0} bytes (one prompt per line expected)");
            bytes = buffer[..read];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"--prompt-file {path}: cannot read it ({e.Message})");
        }
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes).TrimStart('\uFEFF'); }
        catch (DecoderFallbackException) { throw new InputException($"--prompt-file {path}: not UTF-8 text (one prompt per line expected)"); }
        var prompts = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (prompts.Count == 0) throw new InputException($"--prompt-file {path}: no prompt in it (one per line; blank lines and lines starting with # are skipped)");
        return prompts;
    }
}
