using System.Runtime.InteropServices;
using TorchSharp;

namespace ContinualDiffusion.Runtime;

/// Process-wide libtorch settings cdiff needs before it trains or samples.
public static class TorchSetup
{
    private static int _done;

    /// Turns off NNPACK. On CPUs it does not support (this machine's among them) libtorch re-checks NNPACK for
    /// every convolution backward and prints "Could not initialize NNPACK! Reason: Unsupported hardware." each
    /// time — thousands of lines per training run. TorchSharp does not wrap torch.backends.nnpack, so we call
    /// at::globalContext().setUserEnabledNNPACK(false), which libtorch_cpu exports.
    public static void Initialize()
    {
        if (Interlocked.Exchange(ref _done, 1) == 1) return;
        _ = torch.CPU; // loads the native libraries first
        try
        {
            SetUserEnabledNNPACK(GlobalContext(), false);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // A libtorch without these exports: the only cost is noisy warnings on unsupported CPUs.
        }
    }

    /// Turns off oneDNN (mkldnn) kernels for the rest of the process. The test host calls it once (tests run in
    /// parallel); `scripts/bench.sh memory` uses it for its oneDNN-off comparison. Training (pretraining and
    /// `cdiff train`'s tasks) keeps oneDNN on and retries its rare NaN steps without it (Training/NonFiniteStepGuard):
    /// switching it off for a whole task was the earlier design, below.
    ///
    /// The cause, found later: oneDNN's backward through convolutions with 4 output channels (Models/OneDnnSafeConv,
    /// which pads them), not oneDNN as a whole. Why it was switched off: with TorchSharp 0.107's libtorch on this CPU, a backward pass through the UNet with batch ≥ 2
    /// returned all-NaN input gradients in roughly one fresh process in three (the UNet output's gradient was
    /// finite, everything upstream NaN), and training died at step 2. With oneDNN off: 0 in 26 runs; measured
    /// with `scripts/bench.sh train tiny --batch 2 --steps 3` repeated. Batch 1 never showed it. The cost is
    /// about 13% on a UNet forward (SD 1.5, 64×64 latents: 15.3 s → 17.6 s), so sampling keeps oneDNN and only
    /// concept training, where a silent NaN would cost the user a run, switches it off.
    public static void UseTrainingSafeKernels() => TrySetMkldnn(false);

    /// Turns oneDNN off until the returned scope is disposed, then restores the previous setting. Only for a
    /// single-threaded caller: flipping the flag while another thread is inside a oneDNN convolution crashed
    /// the process (seen with parallel test classes).
    public static IDisposable SuspendMkldnn()
    {
        bool was = MkldnnEnabled();
        return TrySetMkldnn(false) ? new Restore(() => TrySetMkldnn(was)) : new Restore(() => { });
    }

    /// False on a libtorch without this export: training still works; the NaN checks remain the safety net.
    private static bool TrySetMkldnn(bool enabled)
    {
        Initialize();
        try { SetUserEnabledMkldnn(GlobalContext(), enabled); return true; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        private Action? _restore = restore;
        public void Dispose() { _restore?.Invoke(); _restore = null; }
    }

    public static bool MkldnnEnabled()
    {
        try { return UserEnabledMkldnn(GlobalContext()); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return true; }
    }

    public static bool NnpackEnabled()
    {
        try { return UserEnabledNNPACK(GlobalContext()); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return true; }
    }

    [DllImport("torch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    // Itanium C++ ABI: a member function takes `this` as its first argument.
    [DllImport("torch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")]
    private static extern void SetUserEnabledNNPACK(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("torch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    private static extern void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("torch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledMkldnn(IntPtr context);

    [DllImport("torch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledNNPACK(IntPtr context);
}
