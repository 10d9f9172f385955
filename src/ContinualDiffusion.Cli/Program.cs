using ContinualDiffusion.Cli;
using ContinualDiffusion.Runtime;

// Reliability testing only. CDIFF_GC_STRESS=1 (Runtime/GcStress): a thread runs full collections and finalizers
// in a tight loop. With it, or with CDIFF_TENSOR_PROBE=1 alone, the last stderr line counts the tensors the
// finalizer disposed (zero when every tensor is owned, Runtime/TensorOwnership).
bool stress = GcStress.StartIf("CDIFF_GC_STRESS");
bool probe = stress || GcStress.Enabled("CDIFF_TENSOR_PROBE");
int code = CliApp.Run(args, Console.Out, Console.Error);
if (probe)
    Console.Error.WriteLine($"cdiff: gc stress: {GcStress.Collections} full collections, {TensorOwnership.TensorsLeftToFinalizer()} tensors left to the finalizer");
return code;
