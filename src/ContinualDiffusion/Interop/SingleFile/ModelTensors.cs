using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Interop.SingleFile;

/// A base model's three networks under their diffusers names, read tensor by tensor: from a diffusers folder's weight
/// files as stored, or from a single file through its LDM key map (the tensors the reader gives the modules). Plus
/// what writing them as an original-LDM single file needs: the layout, whether the text encoder is OpenCLIP's (SD 2.x),
/// and the text-encoder tensors a single file holds that the reader does not use (OpenCLIP's last block, its
/// text_projection and logit_scale), to be carried over under their own keys.
public sealed class ModelTensors : IDisposable
{
    private readonly List<SafeTensorsFile> _files;

    public IReadOnlyDictionary<string, ComponentTensor> Unet { get; }
    public IReadOnlyDictionary<string, ComponentTensor> Vae { get; }
    public IReadOnlyDictionary<string, ComponentTensor> TextEncoder { get; }
    public LdmLayout Layout { get; }

    /// True when the text encoder is SD 2.x's OpenCLIP ViT-H (GELU), written under `cond_stage_model.model.`;
    /// false for SD 1.x's CLIP ViT-L (quick-GELU) under `cond_stage_model.transformer.`.
    public bool OpenClip { get; }

    /// LDM-named text-encoder tensors of a single-file source that no module reads (empty for a folder).
    public IReadOnlyList<ComponentTensor> UnreadText { get; }

    /// Where the tensors come from, for messages.
    public string Source { get; }

    private ModelTensors(string source, List<SafeTensorsFile> files, IReadOnlyDictionary<string, ComponentTensor> unet,
        IReadOnlyDictionary<string, ComponentTensor> vae, IReadOnlyDictionary<string, ComponentTensor> text, LdmLayout layout, bool openClip,
        IReadOnlyList<ComponentTensor> unreadText)
    {
        Source = source; _files = files; Unet = unet; Vae = vae; TextEncoder = text; Layout = layout; OpenClip = openClip; UnreadText = unreadText;
    }

    public IReadOnlyDictionary<string, ComponentTensor> For(SdComponent component) => component switch
    {
        SdComponent.Unet => Unet,
        SdComponent.Vae => Vae,
        SdComponent.TextEncoder => TextEncoder,
        _ => throw new ArgumentOutOfRangeException(nameof(component), component, null),
    };

    public static ModelTensors Open(BaseModelSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return source.SingleFile is { } file ? FromSingleFile(file) : FromFolder(source.Folder!);
    }

    /// The weight files of unet/, vae/ and text_encoder/, every tensor as stored; transformers' `position_ids`
    /// buffer, which older text encoder files hold and no module reads, is left out. The layout comes from the configs.
    public static ModelTensors FromFolder(DiffusersFolder folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var unetConfig = UNetConfig.Load(folder.UnetConfigPath);
        var layers = unetConfig.LayersPerBlockList();
        if (layers.Distinct().Count() != 1)
            throw new InputException($"{folder.UnetConfigPath}: layers_per_block [{string.Join(", ", layers)}] differs between blocks; the LDM single-file layout numbers its blocks with one num_res_blocks");
        var text = ClipTextConfig.Load(folder.TextEncoderConfigPath);
        var layout = new LdmLayout(layers[0], VaeConfig.Load(folder.VaeConfigPath).BlockOutChannels.Length, text.NumHiddenLayers);
        var files = new List<SafeTensorsFile>();
        try
        {
            var unet = Tensors(Open(folder.UnetWeightsPath, files), _ => true);
            var vae = Tensors(Open(folder.VaeWeightsPath, files), _ => true);
            var textTensors = Tensors(Open(folder.TextEncoderWeightsPath, files), k => !ClipTextModel.IsIgnorableCheckpointKey(k));
            return new ModelTensors(folder.Root, files, unet, vae, textTensors, layout, text.HiddenAct == "gelu", []);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// The single file as its reader sees it: each diffusers tensor read from its LDM key and converted
    /// (MappedTensor), in the stored dtype. The file stays owned by the checkpoint.
    public static ModelTensors FromSingleFile(SingleFileCheckpoint file)
    {
        ArgumentNullException.ThrowIfNull(file);
        Dictionary<string, ComponentTensor> Mapped(SdComponent component) =>
            file.Mapping.For(component).ToDictionary(m => m.Key, m => new ComponentTensor(m.Key, DType(file.Header[m.Value.SourceKey]), m.Value.Shape,
                keep =>
                {
                    using var scope = torch.NewDisposeScope();
                    return m.Value.Convert(file.ReadStored(m.Value.SourceKey, keep)).MoveToOuterDisposeScope();
                }), StringComparer.Ordinal);
        var unread = file.Mapping.Ignored
            .Where(k => k.StartsWith(LdmKeyMap.OpenClipPrefix, StringComparison.Ordinal))
            .Select(k => new ComponentTensor(k, DType(file.Header[k]), file.Header[k].Shape, keep => file.ReadStored(k, keep)))
            .ToList();
        return new ModelTensors(file.Path, [], Mapped(SdComponent.Unet), Mapped(SdComponent.Vae), Mapped(SdComponent.TextEncoder),
            file.Architecture.Layout, file.Architecture.Version == SdVersion.Sd2, unread);
    }

    private static SafeTensorsFile Open(string path, List<SafeTensorsFile> files)
    {
        var file = SafeTensorsFile.Open(path);
        files.Add(file);
        return file;
    }

    private static Dictionary<string, ComponentTensor> Tensors(SafeTensorsFile file, Func<string, bool> include) =>
        file.Tensors.Values.Where(t => include(t.Name))
            .ToDictionary(t => t.Name, t => new ComponentTensor(t.Name, DType(t), t.Shape, keep => file.Read(t.Name, keep)), StringComparer.Ordinal);

    private static ScalarType DType(SafeTensorInfo info) => SafeTensorsFile.ToScalarType(info.DType);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
