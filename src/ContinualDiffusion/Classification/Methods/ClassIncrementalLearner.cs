using ContinualDiffusion.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ContinualDiffusion.Classification.Methods;

/// One rehearsal-free class-incremental learner on a pretrained ViT: tasks arrive one after another, each with new
/// classes, and at test time it chooses among every class seen so far with no task id. The base class owns the
/// backbone, the growing head and the class order (column j of the logits is the j-th class learned, a dataset
/// label); each method decides what trains, what extra loss it adds and what it keeps between tasks.
///
/// Training follows CODA-Prompt's protocol (Smith et al., CVPR 2023, and its code): a task's cross-entropy is over
/// that task's own classes only (the logits of earlier classes are left out), so the new rows of the head cannot push
/// the old classes' scores down with data the old classes never see. A task of one class is the exception: over one
/// logit the loss is identically zero and nothing would learn, so its cross-entropy runs over every class seen so far.
public abstract class ClassIncrementalLearner : IDisposable
{
    private readonly List<int> _classes = [];
    private readonly List<int> _taskSizes = [];

    protected ClassIncrementalLearner(VisionTransformer backbone, ClassifyOptions options)
    {
        Backbone = backbone ?? throw new ArgumentNullException(nameof(backbone));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Head = TensorOwnership.Build(() => new IncrementalHead(backbone.Config.EmbedDim));
    }

    public VisionTransformer Backbone { get; }
    public IncrementalHead Head { get; }
    public ClassifyOptions Options { get; }

    /// The method's name as `--method` spells it.
    public abstract string Method { get; }

    /// Dataset labels in column order.
    public IReadOnlyList<int> Classes => _classes;

    /// Classes per finished or current task.
    public IReadOnlyList<int> TaskSizes => _taskSizes;

    /// Tasks begun so far (the current one included).
    public int Tasks => _taskSizes.Count;

    /// The first column of the current task.
    public int CurrentOffset => _classes.Count - (_taskSizes.Count == 0 ? 0 : _taskSizes[^1]);

    /// The first column the training loss sees: the current task's (or 0 for a one-class task, see above).
    public int TrainingOffset => _taskSizes.Count > 0 && _taskSizes[^1] == 1 ? 0 : CurrentOffset;

    /// Whether the method trains at all (NCM does not).
    public virtual bool Trains => true;

    /// Starts a task with `newClasses` (dataset labels not seen before).
    public void BeginTask(IReadOnlyList<int> newClasses, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(newClasses);
        if (newClasses.Count == 0) throw new ArgumentException("a task needs at least one class", nameof(newClasses));
        var seen = newClasses.FirstOrDefault(c => _classes.Contains(c), -1);
        if (seen >= 0) throw new InputException($"class {seen} was already learned in an earlier task (class-incremental tasks bring new classes)");
        if (newClasses.Distinct().Count() != newClasses.Count) throw new ArgumentException("a class appears twice in one task", nameof(newClasses));
        _classes.AddRange(newClasses);
        _taskSizes.Add(newClasses.Count);
        Head.Grow(newClasses.Count, generator);
        OnBeginTask(generator);
    }

    /// Prepares the method's trainable state for the task just begun.
    protected virtual void OnBeginTask(Generator? generator) { }

    /// The column of dataset label `label`, or −1.
    public int ColumnOf(int label) => _classes.IndexOf(label);

    /// Parameter groups the optimiser trains for the current task: (name, parameters, learning rate).
    public abstract IEnumerable<(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate)> TrainableGroups();

    /// The training forward: logits over the columns from TrainingOffset on (the current task's classes), plus the method's extra loss
    /// (already weighted) or null.
    public virtual (Tensor Logits, Tensor? ExtraLoss) TrainForward(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var (features, extra) = TrainFeatures(images);
        var logits = Head.call(features).narrow(1, TrainingOffset, _classes.Count - TrainingOffset);
        extra?.MoveToOuterDisposeScope();
        return (logits.MoveToOuterDisposeScope(), extra);
    }

    /// Features for training and the method's extra loss (prompt methods' key matching, C-LoRA's penalty).
    protected abstract (Tensor Features, Tensor? ExtraLoss) TrainFeatures(Tensor images);

    /// Logits over every class seen so far [B, classes] (no task id).
    public abstract Tensor Predict(Tensor images);

    /// Ends the current task: what the method keeps (C-LoRA folds the factors into the frozen past, NCM stores class
    /// means). `taskTrain` is the task's training set (rehearsal-free: nothing of it may be kept but statistics).
    public virtual void EndTask(Func<IEnumerable<(Tensor Images, Tensor Columns)>> taskTrain) { }

    /// Everything that restores this learner after its last finished task (with the pretrained backbone), by name.
    public virtual Dictionary<string, Tensor> State() => new(StringComparer.Ordinal)
    {
        ["head.weight"] = Copy(Head.Weight),
        ["head.bias"] = Copy(Head.Bias),
    };

    /// A detached copy of `t` for a state dictionary, owned by the caller (the detach wrapper stays in a scope).
    protected static Tensor Copy(Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        return t.detach().clone().MoveToOuterDisposeScope();
    }

    /// Restores <see cref="State"/> saved after the tasks whose classes were `taskClasses`.
    public void Restore(IReadOnlyList<IReadOnlyList<int>> taskClasses, IReadOnlyDictionary<string, Tensor> state)
    {
        if (Tasks != 0) throw new InvalidOperationException("restore into a fresh learner");
        foreach (var classes in taskClasses) { _classes.AddRange(classes); _taskSizes.Add(classes.Count); }
        Head.Load(Required(state, "head.weight"), Required(state, "head.bias"));
        if (Head.Classes != _classes.Count)
            throw new InputException($"the saved head has {Head.Classes} classes, the tasks list {_classes.Count}");
        RestoreMethodState(state);
    }

    protected abstract void RestoreMethodState(IReadOnlyDictionary<string, Tensor> state);

    protected static Tensor Required(IReadOnlyDictionary<string, Tensor> state, string key) =>
        state.TryGetValue(key, out var t) ? t : throw new InputException($"the saved state has no '{key}'");

    /// A saved tensor that must have `shape`, or an error naming the key and the options (`decidedBy`) that fix it.
    protected static Tensor Expect(IReadOnlyDictionary<string, Tensor> state, string key, long[] shape, string decidedBy)
    {
        var t = Required(state, key);
        if (!t.shape.SequenceEqual(shape))
            throw new InputException($"'{key}' is [{string.Join(", ", t.shape)}], the options give [{string.Join(", ", shape)}] ({decidedBy} must be the run's)");
        return t;
    }

    /// The dtype and device of the backbone's weights, where a method's own tensors live.
    protected (ScalarType DType, Device Device) BackboneKind()
    {
        var p = Backbone.parameters().First();
        return (p.dtype, p.device);
    }

    /// A parameter the learner keeps: taken out of every dispose scope; the learner disposes it.
    protected static Parameter Owned(Parameter p)
    {
        p.DetachFromDisposeScope();
        return p;
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing) Head.Dispose();
    }
}
