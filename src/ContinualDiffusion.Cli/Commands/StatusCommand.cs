using System.CommandLine;
using System.Globalization;
using ContinualDiffusion.Runs;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff status --run DIR`: tasks, tokens, parameters per task, bytes on disk, and an integrity check.
internal static class StatusCommand
{
    public static Command Create(TextWriter stdout)
    {
        var run = CommonOptions.Run();
        var model = CommonOptions.Model("Where the run's base model (folder or single file) is now, if it was moved since training (its hash must match).");
        var originalConfig = CommonOptions.OriginalConfig();
        var predictionType = CommonOptions.PredictionType();
        var cmd = new Command("status", "Show a run's tasks, tokens, sizes, and check every file and the base model against the manifest.") { run, model, originalConfig, predictionType };
        cmd.SetAction(parse =>
        {
            var status = RunStatus.Inspect(new RunDirectory(parse.GetValue(run)!.FullName), CommonOptions.FullPath(parse.GetValue(model)),
                CommonOptions.SingleFile(parse, originalConfig, predictionType));
            var m = status.Manifest;
            stdout.WriteLine($"run          {parse.GetValue(run)!.FullName}");
            stdout.WriteLine($"base model   {m.BaseModel.Path} (hash {m.BaseModel.Hash[..Math.Min(16, m.BaseModel.Hash.Length)]})");
            if (m.BaseModel.SingleFile is { } single)
                stdout.WriteLine($"             single file; original config {single.OriginalConfig ?? "none"}, prediction type {single.PredictionType ?? "from the file"}");
            stdout.WriteLine($"method       {m.Method}");
            stdout.WriteLine();
            int mw = Math.Max(6, status.Tasks.Select(t => t.Entry.Method.Length).DefaultIfEmpty(0).Max());
            stdout.WriteLine($"{"task",4}  {"token",-6} {"method".PadRight(mw)} {"rank",4} {"lambda",9} {"steps",6} {"final loss",10} {"time",8} {"parameters",11} {"bytes",10}");
            foreach (var t in status.Tasks)
            {
                var e = t.Entry;
                stdout.WriteLine($"{e.Task,4}  {e.Token,-6} {e.Method.PadRight(mw)} {e.Rank,4} {e.Lambda,9:G3} {e.Steps,6} {e.FinalLoss,10:F5} {e.WallTimeSeconds,7:F0}s {t.Parameters,11:N0} {t.Bytes,10:N0}");
            }
            foreach (var e in status.Tasks.Select(t => t.Entry).Where(e => e.RetriedSteps > 0 || e.DroppedSteps > 0))
                stdout.WriteLine($"non-finite   task {e.Task}: {NonFiniteSummary(e)}");
            foreach (var e in status.Tasks.Select(t => t.Entry).Where(e => e.Training is not null))
                stdout.WriteLine($"training     task {e.Task}: {RecipeSummary(e.Training!, e.ImageCount)}");
            stdout.WriteLine();
            stdout.WriteLine($"on disk      {status.TotalBytes:N0} bytes");
            if (status.Problems.Count == 0)
            {
                stdout.WriteLine("integrity    ok (every adapter matches its SHA-256 in the manifest)");
                return ExitCodes.Ok;
            }
            foreach (var p in status.Problems) stdout.WriteLine($"integrity    FAILED: {p}");
            throw new InputException($"{new RunDirectory(parse.GetValue(run)!.FullName).ManifestPath}: {status.Problems.Count} integrity problem(s); the first: {status.Problems[0]}");
        });
        return cmd;
    }

    /// How a task was trained, in one line: "512 px, batch 2 × 4 accumulated, cosine with 50 warm-up steps, token lr 0.005,
    /// Min-SNR γ 5, flips, bf16, 3 of 10 images captioned".
    internal static string RecipeSummary(TaskRecipe r, int imageCount)
    {
        var parts = new List<string>
        {
            $"{r.Resolution} px",
            $"batch {r.BatchSize}" + (r.GradientAccumulationSteps > 1 ? $" × {r.GradientAccumulationSteps} accumulated" : ""),
            r.LrScheduler + (r.LrWarmupSteps > 0 ? $" with {r.LrWarmupSteps} warm-up step{(r.LrWarmupSteps == 1 ? "" : "s")}" : ""),
            $"token lr {r.TokenLearningRate.ToString("G3", CultureInfo.InvariantCulture)}",
        };
        if (r.SnrGamma is { } gamma) parts.Add($"Min-SNR γ {gamma.ToString("G3", CultureInfo.InvariantCulture)}");
        if (r.NoiseOffset > 0) parts.Add($"noise offset {r.NoiseOffset.ToString("G3", CultureInfo.InvariantCulture)}");
        if (r.BucketStep is { } step) parts.Add($"aspect buckets (step {step})");
        parts.Add(r.HorizontalFlip ? "flips" : "no flips");
        parts.Add(r.Dtype + (r.VaeFp32 ? " (VAE fp32)" : ""));
        if (r.GradientCheckpointing) parts.Add("gradient checkpointing");
        parts.Add(r.PromptTemplates.Count == 1 ? $"prompt \"{r.PromptTemplates[0]}\"" : $"{r.PromptTemplates.Count} prompt templates");
        if (r.CaptionedImages > 0) parts.Add($"{r.CaptionedImages} of {imageCount} images captioned");
        return string.Join(", ", parts);
    }

    /// A task's non-finite steps in words (oneDNN's rare NaN, recomputed; half precision's, dropped).
    internal static string NonFiniteSummary(TaskEntry e) =>
        $"{Steps(e.RetriedSteps)} computed again after non-finite gradients, {(e.DroppedSteps == 1 ? "1 update" : $"{e.DroppedSteps} updates")} dropped (of {e.Steps})";

    private static string Steps(int n) => n == 1 ? "1 step" : $"{n} steps";
}
