using System.Runtime.CompilerServices;
using ContinualDiffusion.Runtime;

namespace ContinualDiffusion.Tests.Support;

/// Settles libtorch's process-wide flags once, before any test runs, and starts the GC stress thread when
/// `CDIFF_TEST_GC_STRESS=1` (Runtime/GcStress: full collections and finalizers in a tight loop for the whole run).
///
/// Why the flags: the training NaN guard (Training/NonFiniteStepGuard) turns oneDNN off and back on around a
/// retried step. xunit runs test classes in parallel, and
/// flipping that flag while another thread is inside a oneDNN convolution crashed the test host (CI of stop 8:
/// "Test host process crashed" after 318 passed). With the flag settled before the first test there is no
/// transition left to race with. The CLI keeps oneDNN on for sampling; each cdiff command is one sequential
/// process, so it never races.
internal static class TestProcessSetup
{
    [ModuleInitializer]
    internal static void UseTrainingKernelsEverywhere()
    {
        TorchSetup.UseTrainingSafeKernels();
        GcStress.StartIf("CDIFF_TEST_GC_STRESS");
    }
}
