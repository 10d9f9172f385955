using ContinualDiffusion.Runtime;
using ContinualDiffusion.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Models;

/// transformers CLIPTextModel, the Stable Diffusion text encoder. Parameter names equal the checkpoint keys
/// (`text_model.embeddings.token_embedding.weight`, `text_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
///
/// Concept tokens: `ResizeTokenEmbeddings` appends rows for new token ids; the trainer can either train those
/// rows in place, or keep its own trainable (hidden) tensor per concept and pass it through `tokenOverrides`
/// so that only that tensor receives gradients while the whole model stays frozen.
public sealed class ClipTextModel : nn.Module<Tensor, Tensor>
{
    public const string ConfigFileName = "config.json";
    public const string WeightsFileName = "model.safetensors";

    private readonly ClipTextTransformer text_model;

    public ClipTextConfig Config { get; private set; }

    public ClipTextModel(ClipTextConfig config, Device? device = null) : base(nameof(ClipTextModel))
    {
        config.Validate("ClipTextConfig");
        Config = config;
        text_model = new ClipTextTransformer(config, device);
        RegisterComponents();
    }

    /// Loads a diffusers `text_encoder/` folder: config.json and model.safetensors (fp16/bf16 upcast to fp32).
    public static ClipTextModel FromPretrained(string textEncoderDir, Device? device = null)
    {
        var config = ClipTextConfig.Load(Path.Combine(textEncoderDir, ConfigFileName));
        WeightsSizeCheck.Require(config.MinimumParameters(), Path.Combine(textEncoderDir, ConfigFileName), Path.Combine(textEncoderDir, WeightsFileName));
        var model = Runtime.TensorOwnership.Build(() => new ClipTextModel(config, device));
        try
        {
            model.LoadWeights(Path.Combine(textEncoderDir, WeightsFileName));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// Strict by-name load; the only checkpoint key allowed to be left over is transformers' position_ids buffer.
    public void LoadWeights(string safetensorsPath) =>
        StateDictLoader.LoadStrict(this, safetensorsPath, IsIgnorableCheckpointKey);

    /// `text_model.embeddings.position_ids`: a constant arange buffer that older transformers versions saved;
    /// positions are computed in forward here.
    public static bool IsIgnorableCheckpointKey(string key) => key == "text_model.embeddings.position_ids";

    /// Rows of the token embedding matrix (49408 for SD, more after concept tokens are added).
    public int VocabSize => (int)text_model.Embeddings.TokenWeight.shape[0];

    public int HiddenSize => Config.HiddenSize;

    /// last_hidden_state for int64 input ids (batch, tokens) — SD's encoder_hidden_states.
    public override Tensor forward(Tensor inputIds)
    {
        using var output = Encode(inputIds);
        return output.LastHiddenState.alias();
    }

    /// Full forward. `tokenOverrides` maps token ids to (hidden) or (1, hidden) embedding rows used instead of
    /// the matrix rows (gradients flow into those tensors, not into the matrix); `outputHiddenStates` also
    /// returns the embeddings output and every layer's output.
    public ClipTextOutput Encode(Tensor inputIds, IReadOnlyDictionary<long, Tensor>? tokenOverrides = null, bool outputHiddenStates = false) =>
        text_model.Forward(inputIds, tokenOverrides, outputHiddenStates);

    /// Grows the token embedding matrix to `newVocabSize` rows. Existing rows are kept exactly; new rows are
    /// drawn from N(0, s^2) with s the standard deviation of all existing entries, so a new token starts at a
    /// random point with the typical scale of a real token embedding (C-LoRA initialises new tokens randomly,
    /// not from a word). The parameter keeps its name and requires_grad flag; Config.VocabSize is updated.
    public void ResizeTokenEmbeddings(int newVocabSize, Generator? generator = null)
    {
        var old = text_model.Embeddings.TokenWeight;
        long oldRows = old.shape[0], hidden = old.shape[1];
        if (newVocabSize < oldRows)
            throw new ArgumentOutOfRangeException(nameof(newVocabSize), newVocabSize, $"the token embedding has {oldRows} rows; shrinking would drop tokens");
        if (newVocabSize == oldRows) return;

        Tensor grown;
        using (torch.no_grad())
        using (var scope = torch.NewDisposeScope())
        {
            double std = old.to_type(ScalarType.Float64).std().item<double>();
            var fresh = torch.randn(newVocabSize - oldRows, hidden, dtype: ScalarType.Float32, generator: generator).Times(std);
            grown = torch.cat([old.detach(), fresh.to(old.dtype).to(old.device)], 0).MoveToOuterDisposeScope();
        }
        text_model.Embeddings.ReplaceTokenWeight((Parameter)new Parameter(grown, old.requires_grad).DetachFromDisposeScope());
        Config = Config with { VocabSize = newVocabSize }; // `old` was disposed by ReplaceTokenWeight
    }

    /// A copy of one token's embedding row, shape (hidden), detached from the graph.
    public Tensor GetTokenEmbedding(long tokenId)
    {
        var weight = text_model.Embeddings.TokenWeight;
        CheckTokenId(tokenId, weight);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        return weight[tokenId].detach().clone().MoveToOuterDisposeScope();
    }

    /// Overwrites one token's embedding row with `row` of shape (hidden) or (1, hidden).
    public void SetTokenEmbedding(long tokenId, Tensor row)
    {
        var weight = text_model.Embeddings.TokenWeight;
        CheckTokenId(tokenId, weight);
        if (row.numel() != weight.shape[1])
            throw new ArgumentException($"embedding row has shape [{string.Join(", ", row.shape)}], expected [{weight.shape[1]}]", nameof(row));
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        weight[tokenId].copy_(row.reshape(weight.shape[1]).to(weight.dtype).to(weight.device));
    }

    private static void CheckTokenId(long tokenId, Tensor weight)
    {
        if (tokenId < 0 || tokenId >= weight.shape[0])
            throw new ArgumentOutOfRangeException(nameof(tokenId), tokenId, $"the token embedding has {weight.shape[0]} rows");
    }
}
