using System.Text.Json.Serialization;
using ContinualDiffusion.Configuration;
using static ContinualDiffusion.Models.ConfigRules;

namespace ContinualDiffusion.Models;

/// diffusers' `vae/config.json` for AutoencoderKL (0.27.2 keys; defaults are diffusers' defaults).
public sealed record VaeConfig
{
    public const string DownEncoderBlock = "DownEncoderBlock2D";
    public const string UpDecoderBlock = "UpDecoderBlock2D";

    [JsonIgnore] public string Source { get; init; } = "vae config";

    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public string[] DownBlockTypes { get; init; } = [DownEncoderBlock];
    public string[] UpBlockTypes { get; init; } = [UpDecoderBlock];
    public int[] BlockOutChannels { get; init; } = [64];
    public int LayersPerBlock { get; init; } = 1;
    public string ActFn { get; init; } = "silu";
    public int LatentChannels { get; init; } = 4;
    public int NormNumGroups { get; init; } = 32;
    public int SampleSize { get; init; } = 32;
    /// Latents for the UNet are `posterior_sample * scaling_factor`; decoding divides by it.
    public double ScalingFactor { get; init; } = 0.18215;
    public double[]? LatentsMean { get; init; }
    public double[]? LatentsStd { get; init; }
    public bool ForceUpcast { get; init; } = true;

    public static VaeConfig Load(string path)
    {
        var config = JsonConfig.Load<VaeConfig>(path) with { Source = path };
        config.Validate();
        return config;
    }

    /// Pixels per latent cell: 2^(number of blocks - 1) (every block but the last halves the resolution).
    [JsonIgnore] public int VaeScaleFactor => 1 << (BlockOutChannels.Length - 1);

    /// A lower bound of the parameter count (the encoder's second resnet convolutions), for refusing a config
    /// that does not fit its weights before building it.
    public double MinimumParameters() => BlockOutChannels.Sum(c => LayersPerBlock * 9.0 * c * c);

    public void Validate()
    {
        var s = Source;
        int n = BlockOutChannels.Length;
        Require(n > 0, s, "block_out_channels", BlockOutChannels, "a non-empty list");
        RequireAll(BlockOutChannels, c => c > 0 && c % NormNumGroups == 0, s, "block_out_channels", $"positive multiples of norm_num_groups ({NormNumGroups})");
        Require(DownBlockTypes.Length == n, s, "down_block_types", DownBlockTypes, $"{n} entries (one per block_out_channels)");
        Require(UpBlockTypes.Length == n, s, "up_block_types", UpBlockTypes, $"{n} entries (one per block_out_channels)");
        foreach (var t in DownBlockTypes) Require(t == DownEncoderBlock, s, "down_block_types", t, $"'{DownEncoderBlock}'");
        foreach (var t in UpBlockTypes) Require(t == UpDecoderBlock, s, "up_block_types", t, $"'{UpDecoderBlock}'");
        RequirePositive(s, "in_channels", InChannels);
        RequirePositive(s, "out_channels", OutChannels);
        RequirePositive(s, "latent_channels", LatentChannels);
        RequirePositive(s, "layers_per_block", LayersPerBlock);
        Require(LayersPerBlock <= 64, s, "layers_per_block", LayersPerBlock, "at most 64");
        Require(n <= 16, s, "block_out_channels", BlockOutChannels, "at most 16 blocks");
        RequirePositive(s, "norm_num_groups", NormNumGroups);
        Require(ActFn == "silu", s, "act_fn", ActFn, "'silu'");
        Require(ScalingFactor > 0, s, "scaling_factor", ScalingFactor, "a positive number");
        // SDXL-style per-channel latent statistics change how pipelines scale latents; SD 1.x/2.x have none.
        RequireNull(s, "latents_mean", LatentsMean);
        RequireNull(s, "latents_std", LatentsStd);
    }
}
