namespace ContinualDiffusion.Checkpoints;

/// cdiff never unpickles. A PyTorch pickle checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin`: `torch.save`'s zip archive
/// or a bare pickle stream) can run arbitrary code when it is loaded, so every place that reads weights refuses one
/// with a message that says why and what to use instead, rather than a puzzling "not a safetensors file".
public static class PickleRefusal
{
    private static readonly string[] PickleExtensions = [".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"];

    /// True when the file looks like a pickle: a pickle extension, `torch.save`'s zip header ("PK\x03\x04"),
    /// or a pickle protocol 2–5 opcode (0x80 0x02..0x05) in the first two bytes, unless byte 8 opens a JSON
    /// header: a safetensors file begins with its header length, which can start with those same bytes.
    public static bool LooksLikePickle(string path)
    {
        if (PickleExtensions.Contains(System.IO.Path.GetExtension(path), StringComparer.OrdinalIgnoreCase)) return true;
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> head = stackalloc byte[9];
            int n = f.ReadAtLeast(head, 9, throwOnEndOfStream: false);
            if (n == 9 && head[8] == (byte)'{') return false;
            if (n >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4) return true;
            return n >= 2 && head[0] == 0x80 && head[1] is >= 2 and <= 5;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// Throws an InputException for a pickle file; `what` says what was expected ("model weights", "an adapter").
    public static void ThrowIfPickle(string path, string what)
    {
        if (File.Exists(path) && LooksLikePickle(path)) throw Refuse(path, what);
    }

    public static InputException Refuse(string path, string what) => new(
        $"{path}: a PyTorch pickle checkpoint, refused: loading a pickle can run arbitrary code. Give {what} as .safetensors instead " +
        "(convert it once where you trust it, e.g. with diffusers' or kohya's conversion scripts, or safetensors' convert tool)");
}
