using System.Reflection;
using System.Runtime.InteropServices;
using ContinualDiffusion.Build;
using TorchSharp;

namespace ContinualDiffusion.Runtime;

/// What `cdiff doctor` reports: versions, backend, device, threads and the libstdc++ compatibility patch.
public sealed record TorchEnvironmentReport(
    string CdiffVersion,
    string DotnetVersion,
    string OperatingSystem,
    string TorchSharpVersion,
    string TorchBackend,
    string Device,
    bool CudaAvailable,
    int Threads,
    string HostLibStdCxx,
    string CompatPatch);

public static class TorchEnvironment
{
    /// The TorchSharp native bundle this build references (set by the TorchBackend MSBuild property).
    public static string Backend =>
        typeof(TorchEnvironment).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "TorchBackend")?.Value ?? "cpu";

    public static torch.Device DefaultDevice() => torch.cuda.is_available() ? torch.CUDA : torch.CPU;

    public static TorchEnvironmentReport Inspect()
    {
        bool cuda = torch.cuda.is_available(); // also forces the native load, so a broken load fails here
        var (host, patch) = CompatPatchStatus();
        return new TorchEnvironmentReport(
            CdiffVersion: Version(typeof(TorchEnvironment).Assembly),
            DotnetVersion: RuntimeInformation.FrameworkDescription,
            OperatingSystem: RuntimeInformation.OSDescription,
            TorchSharpVersion: Version(typeof(torch).Assembly),
            TorchBackend: Backend,
            Device: cuda ? "cuda" : "cpu",
            CudaAvailable: cuda,
            Threads: torch.get_num_threads(),
            HostLibStdCxx: host,
            CompatPatch: patch);
    }

    private static string Version(Assembly a) =>
        (a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? a.GetName().Version?.ToString() ?? "?")
        .Split('+')[0];

    /// Whether the libLibTorchSharp.so next to the application needed, and carries, the GLIBCXX_3.4.32 patch.
    private static (string Host, string Patch) CompatPatchStatus()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return ("n/a", "not needed (not Linux)");
        var host = ElfGlibcxxCompat.FindHostLibStdCxx();
        if (host is null) return ("not found", "unknown");
        bool modern = ElfGlibcxxCompat.HostHasVersion(host);
        var hostText = $"{host} ({(modern ? "has" : "lacks")} {ElfGlibcxxCompat.MissingVersion})";
        var native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(native)) native = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        if (!File.Exists(native)) return (hostText, "native library not found next to the application");
        var state = ElfGlibcxxCompat.Inspect(native) switch
        {
            ElfPatchOutcome.AlreadyPatched => "in effect",
            ElfPatchOutcome.NotNeeded => "not needed (library does not require it)",
            _ => modern ? "not applied (not needed on this host)" : "MISSING: rebuild with `dotnet build` to apply it",
        };
        return (hostText, state);
    }
}
