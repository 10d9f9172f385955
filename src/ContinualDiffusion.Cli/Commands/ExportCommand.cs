using System.CommandLine;
using ContinualDiffusion.Interop.Export;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff export --run DIR --format kohya|diffusers|peft|merged|merged-single-file --out PATH`: a run's tasks 1..t for other tools.
internal static class ExportCommand
{
    public static Command Create(TextWriter stdout)
    {
        var run = CommonOptions.Run();
        var format = new Option<string>("--format")
        {
            Description = "kohya (one LoRA .safetensors for A1111/Forge/ComfyUI + an embedding file per concept), diffusers (folder: pytorch_lora_weights.safetensors + learned_embeds), peft (folder: adapter_model.safetensors + adapter_config.json + learned_embeds), merged (a complete diffusers model folder), merged-single-file (one original-LDM .safetensors checkpoint for A1111/Forge/ComfyUI + an embedding file per concept).",
            Required = true,
        };
        format.AcceptOnlyFromAmong([.. ExportFormats.Names]);
        var output = new Option<string>("--out")
        {
            Description = "Where to write: NAME.safetensors for kohya and merged-single-file (embeddings go beside it), a folder for the others. Refused if it exists, unless --overwrite.",
            Required = true,
            HelpName = "PATH",
        };
        var tasks = new Option<string?>("--tasks") { Description = "Which tasks: 1..t or t (default: every finished task).", HelpName = "1..t" };
        var rank = new Option<int?>("--rank") { Description = "LoRA formats: the rank-N truncated SVD of each layer's summed delta instead of the exact concatenation of the tasks' factors (rank = the tasks' ranks added up); prints the relative reconstruction error." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing --out (only an earlier export)." };
        var embeddingPrefix = new Option<string?>("--embedding-prefix")
        {
            Description = "kohya, merged-single-file: put PREFIX before each embedding file's name and prompt word (faces- gives faces-v1.safetensors, typed as faces-v1), so two runs' <v1> files do not collide.",
            HelpName = "PREFIX",
        };
        var model = CommonOptions.Model("Where the run's base model (folder or single file) is now, if it was moved since training (its hash must match).");
        var originalConfig = CommonOptions.OriginalConfig();
        var predictionType = CommonOptions.PredictionType();

        var cmd = new Command("export", "Write a run's learned concepts (tasks 1..t) as a kohya, diffusers or PEFT LoRA with embeddings, or as a merged diffusers model or single-file checkpoint.")
        {
            run, format, output, tasks, rank, overwrite, embeddingPrefix, model, originalConfig, predictionType,
        };
        cmd.SetAction(parse =>
        {
            var result = RunExport.Export(new ExportRequest
            {
                RunDir = parse.GetValue(run)!.FullName,
                Format = ExportFormats.Parse(parse.GetValue(format)),
                OutPath = Path.GetFullPath(parse.GetValue(output)!),
                Tasks = parse.GetValue(tasks),
                Rank = parse.GetValue(rank),
                Overwrite = parse.GetValue(overwrite),
                EmbeddingPrefix = parse.GetValue(embeddingPrefix),
                ModelOverride = CommonOptions.FullPath(parse.GetValue(model)),
                SingleFileOverride = CommonOptions.SingleFile(parse, originalConfig, predictionType),
            });
            foreach (var line in result.Messages) stdout.WriteLine(line);
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
