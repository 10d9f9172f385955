using ContinualDiffusion.Lora;
using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Lora;

/// Small explicit models and adapters for the LoRA tests.
internal static class LoraTestData
{
    public const string Hash = "sha256:test-base";

    public static Tensor T(float[,] values) => torch.tensor(values);

    public static Linear LinearWith(Tensor weight, Tensor? bias = null)
    {
        var l = nn.Linear(weight.shape[1], weight.shape[0], hasBias: bias is not null);
        using var noGrad = torch.no_grad();
        l.weight!.copy_(weight);
        if (bias is not null) l.bias!.copy_(bias);
        return l;
    }

    public static void SetFactors(ContinualLoraLinear layer, Tensor a, Tensor b)
    {
        using var noGrad = torch.no_grad();
        layer.LoraA.copy_(a);
        layer.LoraB.copy_(b);
    }

    public static Tensor Randn(Generator g, params long[] shape) => torch.randn(shape, generator: g);

    /// An adapter for `task` with the given per-layer factors (cloned) and a token embedding of width `hidden`.
    public static AdapterSet Adapter(int task, IReadOnlyDictionary<string, (Tensor A, Tensor B)> factors, long hidden = 4,
        int? rank = null, string hash = Hash, AdapterMethod method = AdapterMethod.CLora)
    {
        var layers = factors.ToDictionary(kv => kv.Key, kv => new LoraFactors(kv.Value.A.clone(), kv.Value.B.clone()));
        int r = rank ?? (int)factors.Values.First().A.shape[1];
        return new AdapterSet(new AdapterMetadata(task, $"<v{task}>", r, method, hash), layers, OwnedScalars.Full([1, hidden], (float)task));
    }

    /// Random factors of rank `rank` for every layer of `weights`.
    public static Dictionary<string, (Tensor A, Tensor B)> RandomFactors(Generator g, IReadOnlyDictionary<string, Tensor> weights, int rank) =>
        weights.ToDictionary(kv => kv.Key, kv => (Randn(g, kv.Value.shape[0], rank).Times(0.1f), Randn(g, rank, kv.Value.shape[1])));
}

/// Stands in for the UNet's Attention: public to_k / to_v projections and ReplaceProjection, as in the contract.
internal sealed class FakeAttention : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> to_k;
    public nn.Module<Tensor, Tensor> to_v;

    public FakeAttention(long dim, long contextDim, Generator g) : base(nameof(FakeAttention))
    {
        to_k = LoraTestData.LinearWith(LoraTestData.Randn(g, dim, contextDim));
        to_v = LoraTestData.LinearWith(LoraTestData.Randn(g, dim, contextDim));
        RegisterComponents();
    }

    public void ReplaceProjection(string name, nn.Module<Tensor, Tensor> replacement)
    {
        register_module(name, null!); // TorchSharp refuses to register a name twice: drop the old one first
        register_module(name, replacement);
        if (name == "to_k") to_k = replacement;
        else if (name == "to_v") to_v = replacement;
        else throw new ArgumentException(name);
    }

    public override Tensor forward(Tensor context) => to_k.forward(context).Plus(to_v.forward(context));
}
