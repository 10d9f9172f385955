namespace ContinualDiffusion.Classification;

/// A classification run's manifest (`classify.json`): the method, the pretrained backbone it builds on (bound by
/// hash), the training options, the class names the labels refer to, and one entry per finished task. A task's
/// entry and its state file are written together at the end of the task, so the manifest never lists a task whose
/// state is missing or half-written.
public sealed record ClassifyManifest
{
    public const string FormatName = "cdiff-classify-run";
    public string Format { get; init; } = FormatName;
    public int Version { get; init; } = 1;
    public required string Method { get; init; }
    public required BackboneRef Backbone { get; init; }
    public required ClassifyOptions Options { get; init; }

    /// Where the images come from: "mnist" (the built-in digits) or "folders" (the user's class folders).
    public required string Dataset { get; init; }

    /// Names of the labels, in label order (every class any task learned).
    public required IReadOnlyList<string> ClassNames { get; init; }

    public IReadOnlyList<ClassifyTaskEntry> Tasks { get; init; } = [];

    public sealed record BackboneRef(string Path, string Sha256);
}

/// One finished task: its classes (labels), how it trained, and the learner's state after it (file and hash).
public sealed record ClassifyTaskEntry
{
    public required int Task { get; init; }
    public required IReadOnlyList<int> Classes { get; init; }
    public required int TrainImages { get; init; }
    public required int Steps { get; init; }
    public required double FinalLoss { get; init; }
    public required double Seconds { get; init; }
    public required string State { get; init; }
    public required string StateSha256 { get; init; }
    public required long TrainedValues { get; init; }

    /// The options this task trained with (a later task defaults to the run's, task 1's, and may override them).
    public ClassifyOptions? Options { get; init; }
}
