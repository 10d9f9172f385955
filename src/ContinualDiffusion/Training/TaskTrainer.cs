using System.Diagnostics;
using ContinualDiffusion.Lora;
using ContinualDiffusion.Methods;
using ContinualDiffusion.Models;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Training;

/// One step's outcome.
/// `Applied`: false for a step whose update was dropped (non-finite gradients in half precision on the CPU).
/// `GradNorm`: the gradients' norm before clipping; `LrFactor`: the schedule's factor on both learning rates at this step.
public sealed record TrainStepReport(int Step, int TotalSteps, double Loss, double Mse, double Penalty, double StepSeconds, bool Applied = true,
    double GradNorm = double.NaN, double LrFactor = 1);

/// A training loss that is NaN or infinite: training stops and nothing of the task is written.
public sealed class TrainingDivergedException(string message) : Exception(message);

/// Trains one task on a loaded model: what the method trains on every cross-attention key/value projection (low-rank
/// factors A_t, B_t; a dense delta for Custom Diffusion; nothing for textual inversion) and the new token's embedding
/// row; everything else frozen. The loss is the diffusion MSE plus, for C-LoRA, λ · Σ ‖|P| ⊙ A_t B_t‖²_F
/// (SelfRegularizer; zero at task 1).
///
/// Randomness is a pure function of (seed, task, step), so a fixed seed gives the same adapter twice and a
/// resumed run continues exactly where the interrupted one stopped with no RNG state to carry.
public sealed class TaskTrainer : IDisposable
{
    private readonly StableDiffusion _model;
    private readonly ConceptLatents _latents;
    private readonly TrainingConfig _config;
    private readonly NoiseSchedule _schedule;
    private readonly ContinualMethod _method;
    private readonly IReadOnlyList<IAdaptedLinear> _layers;
    private readonly IReadOnlyList<ContinualLoraLinear> _penalized;
    private readonly TextAnchor? _anchor;
    private readonly TorchSharp.Modules.Parameter _token;
    private readonly AdamW _optimizer;
    private readonly IReadOnlyList<TorchSharp.Modules.Parameter> _trainable;
    private readonly Tensor[] _templateIds;
    private readonly Tensor?[]? _captionIds; // per image (latents index mod image count): its caption's ids, or null
    private readonly int _task;
    private readonly NonFiniteStepGuard _guard;
    private string _lastNonFinite = "";
    private readonly Action<string>? _info;
    private readonly bool _halfOnCpu;

    /// Steps whose non-finite gradients were computed again (NonFiniteStepGuard), over the whole task (a resumed
    /// task goes on from its checkpoint's count); the manifest keeps it (TaskEntry.RetriedSteps).
    public int RetriedSteps => _guard.Retried;

    /// Half precision on the CPU: steps still non-finite when computed again, whose update was dropped (over the
    /// whole task, as RetriedSteps; TaskEntry.DroppedSteps).
    public int SkippedSteps { get; private set; }

    public long TokenId { get; }
    public int Step { get; private set; }
    public IReadOnlyList<IAdaptedLinear> Layers => _layers;
    public Tensor TokenEmbedding => _token;

    /// `pastDeltas`: the earlier tasks' composed delta per adapted layer (TaskComposition.ForTraining; null = zeros).
    /// oneDNN stays on (its convolutions are much faster on the CPU); a step whose loss or gradients come out
    /// non-finite is computed again with it off (NonFiniteStepGuard), and only a step non-finite without it too
    /// means training diverged. Half-precision weights on the CPU are the exception: the step is computed again with
    /// oneDNN on, and a step non-finite twice is dropped (ten in a row: diverged). `oneDnnEnabled`/`suspendOneDnn` default to the process-wide switch; tests fake them.
    public TaskTrainer(StableDiffusion model, ConceptLatents latents, string token, long tokenId,
        IReadOnlyDictionary<string, Tensor>? pastDeltas, TrainingConfig config, int task,
        Func<bool>? oneDnnEnabled = null, Func<IDisposable>? suspendOneDnn = null, Action<string>? info = null,
        IReadOnlyList<string?>? captions = null)
    {
        if (captions is not null && latents.Count != captions.Count && latents.Count != 2 * captions.Count)
            throw new ArgumentException($"{captions.Count} captions for {latents.Count} latents (expected one per image, flipped or not)", nameof(captions));
        _info = info;
        _model = model; _latents = latents; _config = config; _task = task; TokenId = tokenId;
        _method = ContinualMethod.Parse(config.Method);
        _schedule = new NoiseSchedule(model.SchedulerConfig);
        model.Freeze();
        _halfOnCpu = model.Precision.IsHalf && model.Device.type == DeviceType.CPU;
        _guard = new NonFiniteStepGuard($"task {task}", oneDnnEnabled, suspendOneDnn, keepOneDnnOn: _halfOnCpu);
        using var init = new Generator(unchecked((ulong)Mix(config.Seed, task, -1)));
        var targets = model.CrossAttentionKeyValueTargets();
        if (_method.LowRank)
        {
            var lora = LoraInjector.Inject(targets, config.Rank, pastDeltas, init);
            if (_method.OrthogonalInit)
                foreach (var l in lora.Where(l => !l.PastDeltaIsZero))
                {
                    using var down = OrthogonalInit.ProjectDown(l.LoraB, l.PastDelta);
                    l.ResetDown(down);
                }
            _layers = lora;
            _penalized = _method.UsesPenalty ? lora : [];
            if (_method.Penalty == PenaltyKind.TextAnchor) _anchor = BuildAnchor(model, token);
        }
        else
        {
            _layers = _method.Dense ? LoraInjector.InjectDense(targets, pastDeltas) : [];
            _penalized = [];
        }
        var layerParameters = _layers.SelectMany(l => l.NamedTrainableParameters().Select(p => p.Value)).ToList();
        using (torch.NewDisposeScope()) // the lookup's temporaries stay owned until the parameter is made
        {
            var row = model.TextEncoder.GetTokenEmbedding(tokenId).to(model.Device);
            _token = new TorchSharp.Modules.Parameter(row.to(ComputePrecision.TrainableFor(row.dtype)).unsqueeze(0), requires_grad: true); // float32 next to bf16 weights
            _token.DetachFromDisposeScope(); // owned by this trainer (Dispose)
        }
        _trainable = [.. layerParameters, _token];
        var groups = new List<AdamW.Group>();
        if (layerParameters.Count > 0) groups.Add(new AdamW.Group("lora", layerParameters.Cast<Tensor>().ToList(), config.LearningRate));
        groups.Add(new AdamW.Group("token", [_token], config.TokenLearningRate, WeightDecay: 0));
        _optimizer = new AdamW(groups);
        // Token ids per prompt template are fixed; only the embedding of the new token changes between steps.
        _templateIds = config.PromptTemplates
            .Select(t => model.Tokenize([t.Replace("{}", token)]).DetachFromDisposeScope())
            .ToArray();
        if (captions is not null)
        {
            _captionIds = captions.Select(c => c is null ? null : model.Tokenize([c.Replace("{}", token)]).DetachFromDisposeScope()).ToArray();
        }
    }

    /// The text features anchored-lora keeps the outputs of: the past concepts' prompts and the generic captions.
    private static TextAnchor BuildAnchor(StableDiffusion model, string token)
    {
        using var scope = torch.NewDisposeScope();
        var groups = new List<Tensor>();
        var past = model.Tokenizer.ConceptTokens.Where(t => t != token).ToList();
        if (past.Count > 0) groups.Add(torch.cat(past.Select(t => MergeFeatures.Concept(model, t)).ToList(), 0));
        groups.Add(MergeFeatures.Regularization(model, MergeFeatures.ReadCaptions(MergeFeatures.DefaultCaptionsPath)));
        return new TextAnchor(groups);
    }

    /// Deterministic stream id for (seed, task, step).
    private static long Mix(long seed, int task, int step) => unchecked(seed * 1_000_003L + task * 7_919L + step * 104_729L + 17);

    /// Runs steps Step+1..config.Steps. `afterStep` sees each report (progress, checkpoints). Returns the loss of the
    /// last step whose update was applied (NaN if none was).
    public double Run(Action<TrainStepReport>? afterStep = null, CancellationToken cancel = default)
    {
        double last = double.NaN;
        while (Step < _config.Steps)
        {
            cancel.ThrowIfCancellationRequested();
            var report = TrainStep();
            if (report.Applied) last = report.Loss;
            afterStep?.Invoke(report);
        }
        return last;
    }

    public TrainStepReport TrainStep()
    {
        var clock = Stopwatch.StartNew();
        int step = Step + 1;
        using var scope = torch.NewDisposeScope();
        double mseValue = double.NaN, penaltyValue = double.NaN, normValue = double.NaN;
        var (lossValue, apply) = _guard.Run(step, () =>
        {
            using var attempt = torch.NewDisposeScope();
            var (loss, mse, penalty, gradNorm) = ForwardBackward(step);
            mseValue = mse; penaltyValue = penalty; normValue = gradNorm;
            return (loss, gradNorm);
        }, _info);
        if (!apply && !_halfOnCpu)
            throw new TrainingDivergedException($"task {_task}: the loss became {lossValue} at step {step} (try a lower --lr or --lambda); nothing was written{_lastNonFinite}");
        // the schedule counts the updates made so far, as accelerate's does (a dropped step is not one)
        double factor = LrScheduler.Factor(_config.LrScheduler ?? LrScheduler.Constant, (int)_optimizer.StepCount + 1, _config.Steps, _config.LrWarmupSteps ?? 0);
        if (apply)
            _optimizer.Step(factor);
        else
        {
            // Half precision on the CPU retries with oneDNN on (NonFiniteStepGuard), where a NaN can come twice: the
            // update is dropped, as mixed-precision trainers drop an overflowed step; ten in a row stop the task.
            // The count is kept in checkpoints; the ten in a row start afresh on a resume.
            SkippedSteps++;
            _info?.Invoke($"task {_task}: step {step} non-finite{_lastNonFinite}; its update is dropped ({SkippedSteps} so far)");
        }
        Step = step;
        return new TrainStepReport(step, _config.Steps, lossValue, mseValue, penaltyValue, clock.Elapsed.TotalSeconds, apply, normValue, factor);
    }

    /// The step's batches (a pure function of seed, task and step, so a retry sees the same ones), forward, backward and
    /// gradient clipping; the gradients stay on the parameters. With gradient accumulation each of the step's batches
    /// is a forward and backward of 1/n of its loss, the gradients summing to those of the mean. Returns the loss and
    /// its parts (means over the batches) and the gradient norm; a non-finite batch loss stops the step there.
    internal (double Loss, double Mse, double Penalty, double GradNorm) ForwardBackward(int step)
    {
        int n = _config.GradientAccumulationSteps ?? 1;
        _optimizer.ZeroGrad();
        _lastNonFinite = "";
        double loss = 0, mse = 0, penalty = 0;
        var (gen, rng) = Streams(step);
        using var genScope = gen;
        for (int k = 0; k < n; k++)
        {
            using var scope = torch.NewDisposeScope(); // one batch's graph at a time
            var part = BatchForwardBackward(DrawBatch(gen, rng), n);
            loss += part.Loss / n; mse += part.Mse / n; penalty += part.Penalty / n;
            if (!double.IsFinite(part.Loss)) return (part.Loss, part.Mse, part.Penalty, double.NaN);
        }
        var nonFiniteGradients = NonFiniteGradients(); // before clipping, which spreads a NaN norm to every gradient
        double gradNorm = nn.utils.clip_grad_norm_(_trainable, _config.MaxGradNorm);
        if (!double.IsFinite(gradNorm)) _lastNonFinite = NonFiniteReport(null, null, gradNorm, nonFiniteGradients);
        return (loss, mse, penalty, gradNorm);
    }

    /// Batch `k` of `n` of the step alone (for tests): the step's draws up to it, then its forward and backward.
    internal (double Loss, double Mse, double Penalty) BatchForwardBackward(int step, int k, int n)
    {
        var (gen, rng) = Streams(step);
        using var genScope = gen;
        for (int i = 0; i < k; i++)
        {
            using var skipped = torch.NewDisposeScope();
            DrawBatch(gen, rng);
        }
        return BatchForwardBackward(DrawBatch(gen, rng), n);
    }

    /// The step's random streams (a pure function of seed, task and step): torch's for tensors, .NET's for choices.
    private (Generator Torch, Random Choices) Streams(int step) =>
        (new Generator(unchecked((ulong)Mix(_config.Seed, _task, step))), new Random(unchecked((int)Mix(_config.Seed, _task, step))));

    /// The first batch a step draws (for tests: which images and which token ids).
    internal Batch FirstBatchOf(int step)
    {
        var (gen, rng) = Streams(step);
        using var genScope = gen;
        return DrawBatch(gen, rng);
    }

    internal sealed record Batch(long[] Indices, Tensor TokenIds, Tensor Noisy, Tensor Target, Tensor Timesteps);

    /// The next batch of the step's streams (images, templates, noise, timesteps, offset noise), in the order a step
    /// without accumulation always drew them; a step's batches continue the same streams, so they differ.
    private Batch DrawBatch(Generator gen, Random rng)
    {
        int b = _config.BatchSize;
        long[] indices;
        if (_latents.BucketCount == 1)
            indices = [.. Enumerable.Range(0, b).Select(_ => (long)rng.Next(_latents.Count))];
        else
        {
            // Aspect buckets: the first image as without them (every image equally likely), the rest from its bucket.
            long first = rng.Next(_latents.Count);
            var bucket = _latents.Bucket(_latents.BucketOf(first));
            indices = [first, .. Enumerable.Range(1, b - 1).Select(_ => bucket[rng.Next(bucket.Count)])];
        }
        // A template is drawn for every image, captioned or not, so the draws stay those of an uncaptioned folder.
        var ids = torch.cat(Enumerable.Range(0, b).Select(j =>
        {
            var template = _templateIds[rng.Next(_templateIds.Length)];
            return _captionIds?[indices[j] % _captionIds.Length] ?? template;
        }).ToArray());

        var z0 = _latents.Sample(indices, gen).to(_model.Device);
        var noise = torch.randn(z0.shape, generator: gen).to(_model.Device);
        var t = torch.randint(0, _schedule.NumTrainTimesteps, [b], generator: gen, dtype: ScalarType.Int64).to(_model.Device);
        if (_config.NoiseOffset is { } offset) // drawn after the rest, so without it the batch is the one it always was
            noise = noise.Plus(torch.randn([b, z0.shape[1], 1, 1], generator: gen).to(_model.Device).Times(offset));
        return new Batch(indices, ids, _schedule.AddNoise(z0, noise, t), _schedule.TrainingTarget(z0, noise, t), t);
    }

    /// One batch's forward and the backward of its loss / n (the gradients add up on the parameters).
    private (double Loss, double Mse, double Penalty) BatchForwardBackward(Batch batch, int n)
    {
        var (_, ids, noisy, target, t) = batch;
        using var text = _model.TextEncoder.Encode(ids, new Dictionary<long, Tensor> { [TokenId] = _token });
        var pred = _model.Unet.forward(noisy, t, text.LastHiddenState);
        var mse = _config.SnrGamma is { } gamma
            ? MinSnrWeighting.Loss(pred, target, MinSnrWeighting.Weights(_schedule, t, gamma))
            : nn.functional.mse_loss(pred, target);
        var penalty = _anchor is not null ? _anchor.Penalty(_penalized) : SelfRegularizer.Penalty(_penalized);
        var loss = _config.EffectiveLambda > 0 ? mse.Plus(penalty.Times(_config.EffectiveLambda)) : mse;

        double lossValue = loss.item<float>();
        if (double.IsFinite(lossValue))
        {
            (n == 1 ? loss : loss.DividedBy(n)).backward();
            ActivationCheckpoint.ReleaseHandedOver(); // gradient checkpointing's last hand-over (no-op without it)
        }
        else _lastNonFinite = NonFiniteReport(pred, text.LastHiddenState, double.NaN, []);
        return (lossValue, mse.item<float>(), penalty.item<float>());
    }

    private const string TokenName = "<token>";

    /// The adapted layers (and "<token>") whose gradient has a non-finite value, in one read.
    private List<string> NonFiniteGradients()
    {
        using var scope = torch.NewDisposeScope();
        var named = _layers.SelectMany(l => l.NamedTrainableParameters().Select(p => (Name: l.LayerName, Grad: p.Value.grad)))
            .Append((Name: TokenName, Grad: _token.grad)).Where(p => p.Grad is not null).ToList();
        if (named.Count == 0) return [];
        var finite = torch.stack(named.Select(p => p.Grad!.isfinite().all()).ToArray()).data<bool>().ToArray();
        return named.Where((_, i) => !finite[i]).Select(p => p.Name).Distinct().ToList();
    }

    /// Where the non-finite values are, to tell a diverged update from a bad input.
    /// `pred` and `context` are the last batch's (null when the step's batches all had finite losses).
    private string NonFiniteReport(Tensor? pred, Tensor? context, double gradNorm, IReadOnlyList<string> nonFiniteGradients)
    {
        using var scope = torch.NewDisposeScope();
        static bool Bad(Tensor? x) => x is not null && !x.isfinite().all().item<bool>();
        var bad = _layers.Where(l => l.NamedTrainableParameters().Any(p => Bad(p.Value))).Select(l => l.LayerName).ToList();
        var parts = new List<string>();
        if (bad.Count > 0) parts.Add($"{bad.Count} adapter layer(s) non-finite, first {bad[0]}");
        if (Bad(_token)) parts.Add("token embedding non-finite");
        var badLayers = nonFiniteGradients.Where(n => n != TokenName).ToList();
        if (badLayers.Count > 0) parts.Add($"{badLayers.Count} adapter layer(s) with non-finite gradients, first {badLayers[0]}, last {badLayers[^1]}");
        if (nonFiniteGradients.Contains(TokenName)) parts.Add("token gradient non-finite");
        if (Bad(context)) parts.Add("text states non-finite");
        if (Bad(pred)) parts.Add("UNet output non-finite");
        if (!double.IsFinite(gradNorm)) parts.Add("gradients non-finite");
        return parts.Count == 0 ? "" : $" ({string.Join("; ", parts)})";
    }

    /// Everything `--resume` needs: current factors, token row, optimizer moments, step.
    public Dictionary<string, Tensor> CheckpointTensors()
    {
        var d = _optimizer.StateTensors();
        foreach (var l in _layers)
            foreach (var (suffix, p) in l.NamedTrainableParameters()) d[$"{l.LayerName}.{suffix}"] = p;
        d["token_embedding"] = _token;
        d["step"] = torch.tensor((long)Step);
        d[RetriedKey] = torch.tensor((long)RetriedSteps);
        d[DroppedKey] = torch.tensor((long)SkippedSteps);
        return d;
    }

    public void RestoreCheckpoint(IReadOnlyDictionary<string, Tensor> d, string source)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        foreach (var (key, t) in d) // a checkpoint only ever holds finite numbers; anything else is a damaged file
            if (t.is_floating_point() && !t.isfinite().all().item<bool>())
                throw new InputException($"{source}: key '{key}' holds NaN or infinite values");
        Tensor Get(string key)
        {
            if (!d.TryGetValue(key, out var v)) throw new InputException($"{source}: missing key '{key}'");
            return v;
        }
        Tensor Like(string key, Tensor target)
        {
            var v = Get(key);
            if (!v.shape.SequenceEqual(target.shape) || !v.is_floating_point())
                throw new InputException($"{source}: key '{key}' has shape [{string.Join(", ", v.shape)}] {v.dtype}, expected [{string.Join(", ", target.shape)}] floating point");
            return v;
        }
        foreach (var l in _layers)
            foreach (var (suffix, p) in l.NamedTrainableParameters()) p.copy_(Like($"{l.LayerName}.{suffix}", p));
        _token.copy_(Like("token_embedding", _token));
        _optimizer.LoadStateTensors(d, source);
        var step = Get("step");
        if (step.numel() != 1 || step.is_floating_point() || step.item<long>() is < 0 or > int.MaxValue)
            throw new InputException($"{source}: key 'step' must hold one non-negative integer");
        Step = (int)step.item<long>();
        _guard.ContinueFrom(Count(RetriedKey));
        SkippedSteps = Count(DroppedKey);

        // Checkpoints written before these counts were kept have neither key: the resumed task counts from zero.
        int Count(string key)
        {
            if (!d.TryGetValue(key, out var v)) return 0;
            if (v.numel() != 1 || v.is_floating_point() || v.item<long>() < 0 || v.item<long>() > Step)
                throw new InputException($"{source}: key '{key}' must hold one integer from 0 to the step ({Step})");
            return (int)v.item<long>();
        }
    }

    private const string RetriedKey = "retried_steps", DroppedKey = "dropped_steps";

    /// The finished task's adapter (detached CPU copies).
    public AdapterSet ToAdapterSet(AdapterMetadata metadata) => _method.LowRank
        ? AdapterSet.FromLayers(_layers.Cast<ContinualLoraLinear>(), _token, metadata)
        : AdapterSet.FromDense(_layers.Cast<DenseDeltaLinear>().Select(l => (l.LayerName, (Tensor)l.Delta)), _token, metadata);

    public void Dispose()
    {
        _optimizer.Dispose();
        _anchor?.Dispose();
        foreach (var ids in _templateIds) ids.Dispose();
        foreach (var ids in _captionIds ?? []) ids?.Dispose();
        _token.Dispose();
    }
}
