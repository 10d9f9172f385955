using System.Security.Cryptography;

namespace ContinualDiffusion.Checkpoints;

/// How a run identifies its base model's weights without reading gigabytes: a weights file contributes its size
/// and its first and last MiB (the safetensors header, which lists every tensor's name, dtype, shape and offsets,
/// and the tail of the data). Shared by diffusers folders and single-file checkpoints so both bind runs alike.
internal static class IdentityHashing
{
    private const int Window = 1 << 20;

    public static void AppendHeadAndTail(IncrementalHash sha, Stream weights)
    {
        AppendRange(sha, weights, 0, Window);
        AppendRange(sha, weights, Math.Max(0, weights.Length - Window), Window);
    }

    private static void AppendRange(IncrementalHash sha, Stream s, long offset, int count)
    {
        var buf = new byte[(int)Math.Min(count, s.Length - offset)];
        s.Seek(offset, SeekOrigin.Begin);
        s.ReadExactly(buf);
        sha.AppendData(buf);
    }
}
