namespace ContinualDiffusion.Evaluation.Reporting;

/// Benchmark results that cannot be reported: a malformed results.json or inconsistent runs (wrong matrix shape,
/// non-finite score, one method with two λ values...). The message names the file or run and what was expected.
public sealed class ResultsException(string message) : InputException(message);
