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

    [DllImport("torch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledNNPACK(IntPtr context);
}
