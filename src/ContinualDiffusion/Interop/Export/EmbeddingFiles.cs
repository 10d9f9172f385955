using ContinualDiffusion.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.Export;

/// The concept tokens' embeddings in the two single-file textual-inversion forms other tools load.
public static class EmbeddingFiles
{
    /// A1111 / Forge / ComfyUI: `<stem>.safetensors` holding one tensor `emb_params` [1, D] (the safetensors form of
    /// A1111's embeddings, `modules/textual_inversion/textual_inversion.py`, which also accepts any single-key file;
    /// ComfyUI's `comfy/sd1_clip.py` `load_embed` takes `emb_params` or the only tensor). The prompt word is the file
    /// stem: A1111 matches it as a word, ComfyUI as `embedding:<stem>`.
    public const string A1111Key = "emb_params";

    /// diffusers: `learned_embeds.safetensors` holding one tensor named by the token, [D]
    /// (`loaders/textual_inversion.py`: a single-key state dict is `{token: embedding}`; 1-D and [1, D] both load).
    public const string DiffusersFileName = "learned_embeds.safetensors";

    public static string A1111Path(string dir, ConceptEmbedding concept) => Path.Combine(dir, concept.Stem + ".safetensors");

    /// One folder per concept, so `pipe.load_textual_inversion("DIR/v1")` finds the default file name.
    public static string DiffusersPath(string dir, ConceptEmbedding concept) => Path.Combine(dir, concept.Stem, DiffusersFileName);

    public static void WriteA1111(string path, ConceptEmbedding concept, IReadOnlyDictionary<string, string> metadata)
    {
        using var scope = torch.NewDisposeScope();
        var row = concept.Embedding.to_type(ScalarType.Float32).reshape(1, -1).contiguous();
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor> { [A1111Key] = row }, metadata);
    }

    public static void WriteDiffusers(string path, ConceptEmbedding concept)
    {
        using var scope = torch.NewDisposeScope();
        var row = concept.Embedding.to_type(ScalarType.Float32).reshape(-1).contiguous();
        SafeTensorsFile.Save(path, new Dictionary<string, Tensor> { [concept.Token] = row }, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// Reads either form back: the only tensor of the file as [1, D] (the caller owns it).
    public static Tensor Read(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        if (file.Tensors.Count != 1) throw new InputException($"{path}: an embedding file holds one tensor, this one {file.Tensors.Count}");
        using var scope = torch.NewDisposeScope();
        return file.Read(file.Tensors.Keys.Single()).reshape(1, -1).clone().MoveToOuterDisposeScope();
    }
}
