using ContinualDiffusion.Interop.SingleFile;

namespace ContinualDiffusion.Interop.Export;

/// What `cdiff export` was asked: which run, which tasks (`--tasks`, null = all finished), in which format, where.
/// `Rank`: truncate the summed delta of every layer to this rank by SVD (LoRA formats only; null = the exact
/// concatenation of the tasks' factors). `ModelOverride` / `SingleFileOverride`: where the run's base model is now, as
/// for `cdiff sample --run`.
public sealed record ExportRequest
{
    public required string RunDir { get; init; }
    public required ExportFormat Format { get; init; }
    public required string OutPath { get; init; }
    public string? Tasks { get; init; }
    public int? Rank { get; init; }
    public bool Overwrite { get; init; }
    public string? ModelOverride { get; init; }
    public SingleFileOptions? SingleFileOverride { get; init; }

    /// `--embedding-prefix`: put before each embedding file's stem and prompt word (EmbeddingPrefix; kohya and
    /// merged-single-file only); null = none.
    public string? EmbeddingPrefix { get; init; }
}

/// What an export wrote, and the lines to tell the user (which word to type for each concept, the truncation error).
public sealed record ExportResult(IReadOnlyList<string> Written, IReadOnlyList<string> Messages);
