using System.Text;

namespace ContinualDiffusion;

/// A small user text file (a caption, a prompt file) read safely: at most one byte past the limit (the file may be a
/// symlink to /dev/zero or a pipe, of no declared length), strict UTF-8, a byte-order mark dropped. Each failure is an
/// InputException whose one line the caller words (`message(problem, detail)`; detail: the I/O error's message).
public static class BoundedTextFile
{
    public enum Problem { TooLarge, Unreadable, NotUtf8 }

    public static string Read(string path, int maxBytes, Func<Problem, string, string> message)
    {
        byte[] bytes;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, FileOptions.SequentialScan);
            var buffer = new byte[maxBytes + 1];
            int read = 0, n;
            while (read < buffer.Length && (n = stream.Read(buffer, read, buffer.Length - read)) > 0) read += n;
            if (read > maxBytes) throw new InputException(message(Problem.TooLarge, ""));
            bytes = buffer[..read];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException(message(Problem.Unreadable, e.Message));
        }
        try { return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes).TrimStart('\uFEFF'); }
        catch (DecoderFallbackException) { throw new InputException(message(Problem.NotUtf8, "")); }
    }
}
