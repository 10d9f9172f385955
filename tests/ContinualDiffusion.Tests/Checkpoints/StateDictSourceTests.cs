using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Interop.SingleFile;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Tests.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Checkpoints;

/// StateDictLoader's one set of strict rules over both kinds of source: a safetensors file keyed by the module's names
/// (its messages are the ones cdiff always printed, word for word) and an original-LDM single file's renamed view
/// (its messages name the LDM key and the diffusers key).
public class StateDictSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-state-dict-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// A file holding a Linear(2 → 3) under "enc." plus keys the loads below must or must not look at.
    private string Write(Action<Dictionary<string, Tensor>> edit)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["enc.weight"] = OwnedScalars.Arange(0, 6, ScalarType.Float32).reshape(3, 2),
            ["enc.bias"] = torch.tensor(new[] { 1f, 2f, 3f }),
            ["enc.position_ids"] = OwnedScalars.Arange(0, 4), // saved by older writers, harmless: ignorable
            ["dec.weight"] = torch.zeros(5), // another component's key: outside the prefix
        };
        edit(tensors);
        var path = Path.Combine(_dir, $"{Guid.NewGuid():N}.safetensors");
        SafeTensorsFile.Save(path, tensors);
        return path;
    }

    private static void LoadEnc(nn.Module module, string path)
    {
        using var file = SafeTensorsFile.Open(path);
        StateDictLoader.LoadStrict(module, file, k => k == "enc.position_ids", keyPrefix: "enc.");
    }

    private static string Fails(string path)
    {
        using var linear = torch.nn.Linear(2, 3);
        return Assert.Throws<CheckpointMismatchException>(() => LoadEnc(linear, path)).Message;
    }

    [Fact]
    public void A_plain_file_under_a_prefix_loads_every_value_and_skips_the_ignorable_and_foreign_keys()
    {
        var path = Write(_ => { });
        using var linear = torch.nn.Linear(2, 3);
        LoadEnc(linear, path);
        using var scope = torch.NewDisposeScope();
        Assert.Equal(new[] { 0f, 1f, 2f, 3f, 4f, 5f }, linear.weight!.data<float>().ToArray());
        Assert.Equal(new[] { 1f, 2f, 3f }, linear.bias!.data<float>().ToArray());
    }

    [Fact]
    public void A_plain_file_reports_missing_unexpected_and_misshapen_keys_as_it_always_did()
    {
        var missing = Write(t => t.Remove("enc.bias"));
        Assert.Equal($"{missing}: missing key 'enc.bias'", Fails(missing));

        var unexpected = Write(t => { t["enc.stray"] = torch.zeros(1); t["enc.zzz"] = torch.zeros(1); });
        Assert.Equal($"{unexpected}: unexpected key 'enc.stray' (and 1 more)", Fails(unexpected));

        var misshapen = Write(t => t["enc.weight"] = torch.zeros(2, 2));
        Assert.Equal($"{misshapen}: key 'enc.weight' has shape [2, 2], the model expects [3, 2]", Fails(misshapen));
    }

    [Fact]
    public void An_ldm_view_names_the_ldm_key_and_the_diffusers_key_in_every_error()
    {
        using var file = SafeTensorsFile.Open(Sd1SingleFile.Model);
        var architecture = LdmArchitecture.Infer(file.Tensors, file.Path);
        var text = LdmKeyMap.Map(file.Tensors, architecture.Layout, file.Path).TextEncoder;
        const string Name = "text_model.final_layer_norm.weight";
        string ldmKey = text[Name].SourceKey;
        Assert.StartsWith(LdmKeyMap.ClipPrefix, ldmKey);
        using var model = new ClipTextModel(architecture.TextEncoder);

        string ViewFails(Action<Dictionary<string, MappedTensor>> edit)
        {
            var view = new Dictionary<string, MappedTensor>(text, StringComparer.Ordinal);
            edit(view);
            return Assert.Throws<CheckpointMismatchException>(() =>
                StateDictLoader.LoadStrict(model, new LdmStateDict(file, view, SdComponent.TextEncoder))).Message;
        }

        Assert.Equal($"{file.Path}: no key of this LDM checkpoint gives the text encoder's '{Name}'", ViewFails(v => v.Remove(Name)));
        Assert.Equal($"{file.Path}: key '{ldmKey}' maps to the text encoder's 'text_model.extra.weight', which the model inferred from this file does not have",
            ViewFails(v => v["text_model.extra.weight"] = text[Name]));
        int width = architecture.TextEncoder.HiddenSize;
        Assert.Equal($"{file.Path}: key '{ldmKey}' gives the text encoder's '{Name}' shape [{width + 1}], the model expects [{width}]",
            ViewFails(v => v[Name] = text[Name] with { Shape = [width + 1] }));

        StateDictLoader.LoadStrict(model, new LdmStateDict(file, text, SdComponent.TextEncoder)); // the unedited view loads
    }
}
