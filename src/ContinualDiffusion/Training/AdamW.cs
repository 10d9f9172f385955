using ContinualDiffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// AdamW (decoupled weight decay), the same update as torch.optim.AdamW, written out so its state (first and
/// second moments, step count) is plain named tensors that a checkpoint can save and `--resume` restore exactly.
public sealed class AdamW : IDisposable
{
    public sealed record Group(string Name, IReadOnlyList<Tensor> Parameters, double LearningRate, double WeightDecay = 1e-2);

    private readonly IReadOnlyList<Group> _groups;
    private readonly double _beta1, _beta2, _eps;
    private readonly Dictionary<Tensor, (Tensor M, Tensor V)> _state = new(ReferenceEqualityComparer.Instance);
    public long StepCount { get; private set; }

    public AdamW(IReadOnlyList<Group> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        _groups = groups; _beta1 = beta1; _beta2 = beta2; _eps = eps;
        foreach (var p in groups.SelectMany(g => g.Parameters))
            _state[p] = (torch.zeros_like(p).DetachFromDisposeScope(), torch.zeros_like(p).DetachFromDisposeScope());
    }

    public IEnumerable<Tensor> Parameters => _groups.SelectMany(g => g.Parameters);

    public void ZeroGrad()
    {
        using var scope = torch.NewDisposeScope(); // `p.grad` and `zero_()` each return a new wrapper
        foreach (var p in Parameters) p.grad?.zero_();
    }

    /// `learningRateScale` multiplies every group's rate for this step (warm-up and decay schedules).
    public void Step(double learningRateScale = 1.0)
    {
        StepCount++;
        double bc1 = 1 - Math.Pow(_beta1, StepCount), bc2 = 1 - Math.Pow(_beta2, StepCount);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope(); // `p.grad` returns a new wrapper on every call
        foreach (var g in _groups)
        {
            foreach (var p in g.Parameters)
            {
                if (p.grad is not { } grad) continue;
                var (m, v) = _state[p];
                double lr = g.LearningRate * learningRateScale;
                p.MultiplyInPlace(1 - lr * g.WeightDecay);
                m.MultiplyInPlace(_beta1).AddInPlace(grad, alpha: 1 - _beta1);
                v.MultiplyInPlace(_beta2).AddProductInPlace(grad, grad, 1 - _beta2);
                using var denom = v.DividedBy(bc2).sqrt_().AddInPlace(_eps);
                p.AddQuotientInPlace(m, denom, -lr / bc1);
            }
        }
    }

    /// Moments under "<group>.<index>.m/v" plus the step count, for checkpoints.
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var g in _groups)
            for (int i = 0; i < g.Parameters.Count; i++)
            {
                var (m, v) = _state[g.Parameters[i]];
                d[$"optimizer.{g.Name}.{i}.m"] = m;
                d[$"optimizer.{g.Name}.{i}.v"] = v;
            }
        d["optimizer.step"] = torch.tensor(StepCount);
        return d;
    }

    public void LoadStateTensors(IReadOnlyDictionary<string, Tensor> d, string source)
    {
        using var noGrad = torch.no_grad();
        foreach (var g in _groups)
            for (int i = 0; i < g.Parameters.Count; i++)
            {
                var (m, v) = _state[g.Parameters[i]];
                Copy(m, d, $"optimizer.{g.Name}.{i}.m", source);
                Copy(v, d, $"optimizer.{g.Name}.{i}.v", source);
            }
        if (!d.TryGetValue("optimizer.step", out var s)) throw new InputException($"{source}: missing key 'optimizer.step'");
        if (s.numel() != 1 || s.is_floating_point() || s.item<long>() < 0) throw new InputException($"{source}: key 'optimizer.step' must hold one non-negative integer");
        StepCount = s.item<long>();
    }

    private static void Copy(Tensor target, IReadOnlyDictionary<string, Tensor> d, string key, string source)
    {
        if (!d.TryGetValue(key, out var t)) throw new InputException($"{source}: missing key '{key}'");
        if (!t.shape.SequenceEqual(target.shape) || !t.is_floating_point())
            throw new InputException($"{source}: key '{key}' has shape [{string.Join(", ", t.shape)}] {t.dtype}, expected [{string.Join(", ", target.shape)}] floating point");
        target.copy_(t);
    }

    public void Dispose()
    {
        foreach (var (m, v) in _state.Values) { m.Dispose(); v.Dispose(); }
        _state.Clear();
    }
}
