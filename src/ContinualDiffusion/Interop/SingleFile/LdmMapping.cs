namespace ContinualDiffusion.Interop.SingleFile;

/// The three networks of a Stable Diffusion pipeline, as the parts of a single-file checkpoint.
public enum SdComponent
{
    Unet,
    Vae,
    TextEncoder,
}

/// Every key of an original-LDM checkpoint sorted into the three diffusers components (by diffusers key), the keys
/// no part of an SD pipeline reads, and the keys that fit no rule.
/// <param name="Ignored">LDM keys that are not weights of the pipeline: the DDPM schedule buffers and EMA copies
/// LDM saves, OpenCLIP's `text_projection` and `logit_scale`, its last block (SD 2 reads the penultimate layer),
/// transformers' `position_ids` buffer.</param>
/// <param name="Unknown">Keys under a network's prefix that no rule maps: loading refuses the file naming them.</param>
public sealed record LdmMapping(
    IReadOnlyDictionary<string, MappedTensor> Unet,
    IReadOnlyDictionary<string, MappedTensor> Vae,
    IReadOnlyDictionary<string, MappedTensor> TextEncoder,
    IReadOnlyList<string> Ignored,
    IReadOnlyList<string> Unknown)
{
    public IReadOnlyDictionary<string, MappedTensor> For(SdComponent component) => component switch
    {
        SdComponent.Unet => Unet,
        SdComponent.Vae => Vae,
        SdComponent.TextEncoder => TextEncoder,
        _ => throw new ArgumentOutOfRangeException(nameof(component), component, null),
    };

    /// How a component is called in messages.
    public static string Describe(SdComponent component) => component switch
    {
        SdComponent.Unet => "UNet",
        SdComponent.Vae => "VAE",
        SdComponent.TextEncoder => "text encoder",
        _ => component.ToString(),
    };
}
