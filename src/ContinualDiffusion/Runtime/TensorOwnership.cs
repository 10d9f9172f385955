using TorchSharp;

namespace ContinualDiffusion.Runtime;

/// The tensor ownership rule every line of cdiff follows, and the probe that checks it.
///
/// **The rule.** Every TorchSharp `Tensor`, `Parameter` and `Generator` is, from the moment it is made until its
/// last native use, either
///   1. inside a dispose scope (`using var scope = torch.NewDisposeScope();` — the scope's list keeps it
///      reachable and disposes it when the scope ends; results leave with `MoveToOuterDisposeScope()`), or
///   2. owned by exactly one object that disposes it: a module field registered with `RegisterComponents()`, a
///      `using var` local, or a class that implements `IDisposable` and disposes it (`AdapterSet`, the trainers).
/// No correctness may depend on the finalizer: a tensor nobody owns is a bug even when it is never used again.
///
/// **Why (the segfault of issue 11).** TorchSharp 0.107 tensors and generators hold a raw native handle, their
/// finalizer frees it (`~Tensor` → `THSTensor_dispose`), and a native call receives only the handle, with no
/// `GC.KeepAlive` of the managed object. The JIT ends a local's lifetime at its last use, and that last use is
/// the read of `.Handle` just before the call, so during the call an unowned temporary — `a.add(b.to_type(...))`
/// with no scope around it, `copy_(x.to(...))`, `new Generator(1)` passed inline — is unreachable. Any garbage
/// collection then (another thread allocating is enough; libtorch calls run in preemptive mode) queues it for
/// the finalizer thread, which deletes the `at::Tensor` and its `TensorImpl` while libtorch is still reading
/// it: `segfault ... in libc10.so` at `c10::TensorImpl::_fw_grad + 16`, a call through the freed AutogradMeta.
/// Tensors inside a dispose scope are referenced by the scope and never reach the finalizer, so the rule
/// removes the window entirely instead of patching the calls where it happened to show.
///
/// **Scalars: the same rule, enforced on the compiled code.** `Scalar` has the same raw handle and finalizer, and
/// TorchSharp makes one, never disposed, for every implicit conversion (`x * 0.5`, `x.clamp(0, 1)`) and inside
/// some of its own methods (`a + b` passes an implicit alpha of 1, `square()` an exponent of 2). Dispose scopes do
/// not track Scalars. Such a Scalar is dead during the very op that reads it, so a collection then frees it under
/// libtorch: one plain `quickstart.sh` run died with libtorch reading a freed Scalar (`toFloat`, Scalar.h:140, in
/// THSTensor_add), and under `CDIFF_GC_STRESS=1` training the scoring classifier failed within seconds
/// ("Unknown scalar type", "alpha must not be a floating point number"). In a plain process the collection need
/// not come from a thread of ours: a background (concurrent) gen-2 collection, started by the main thread's own
/// allocations, finishes its marking on the GC's thread at a moment of its own, possibly while the main thread is
/// inside libtorch (the likely collector in that plain run; not proven). So every Scalar in cdiff is a process-lifetime
/// constant or a `using` local, made through <see cref="OwnedScalars"/> (`a.Plus(b)`, `x.Times(0.5)`,
/// `x.Clamped(0, 1)`), and `Foundation/ScalarOwnershipTests` reads the IL of the library, the CLI, the benchmark
/// tools and the tests and fails on any call that makes an unowned Scalar, directly or inside TorchSharp.
/// Defence in depth: the executables run with the non-concurrent GC (Directory.Build.props), so a collection
/// starts only on a thread that allocates, and all torch work runs on one thread.
///
/// **How it is checked.** <see cref="TensorsLeftToFinalizer"/> counts the tensors the finalizer thread has
/// disposed in this process. With `CDIFF_GC_STRESS=1` (Runtime/GcStress) the `cdiff` executable prints that count
/// at exit, and the tests run real commands that way and require zero; in the test assembly every test also
/// runs inside its own dispose scope (tests/…/Support/TensorScopePerTest).
public static class TensorOwnership
{
    private static long _finalized = -1;

    /// Constructs a module inside a dispose scope, so the temporaries TorchSharp's layer constructors and weight
    /// initialisers make (`init.kaiming_uniform_` returns a fresh wrapper, for one) are disposed rather than left
    /// to the finalizer. Parameters and buffers — some layers (`nn.Embedding`) wrap theirs in scope-registered
    /// tensors — are detached from the scope here and owned by the module from then on.
    public static T Build<T>(Func<T> construct) where T : torch.nn.Module
    {
        using var scope = torch.NewDisposeScope();
        var module = construct();
        foreach (var (_, parameter) in module.named_parameters()) parameter.DetachFromDisposeScope();
        foreach (var (_, buffer) in module.named_buffers()) buffer.DetachFromDisposeScope();
        return module;
    }

    /// Tensors disposed by the finalizer thread so far in this process (each one was a tensor nobody owned).
    /// Runs two full collections: a diagnostic for tests and stress runs, not for hot paths.
    public static long TensorsLeftToFinalizer()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        DropProbe();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return Interlocked.Read(ref _finalized);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void DropProbe() => _ = new FinalizerThreadProbe();

    /// Reads TorchSharp's per-thread dispose statistics on the finalizer thread itself: every tensor disposed
    /// there was disposed by `~Tensor`, since no cdiff code runs on that thread (TorchSharp counts it as
    /// disposed outside a scope, or in a scope when the scope itself was leaked).
    private sealed class FinalizerThreadProbe
    {
        ~FinalizerThreadProbe()
        {
            var s = DisposeScopeManager.Statistics.TensorStatistics;
            Interlocked.Exchange(ref _finalized, s.DisposedOutsideScopeCount + s.DisposedInScopeCount);
        }
    }
}
