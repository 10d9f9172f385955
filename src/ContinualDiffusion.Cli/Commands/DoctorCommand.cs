using System.CommandLine;
using ContinualDiffusion.Runtime;

namespace ContinualDiffusion.Cli.Commands;

/// `cdiff doctor`: is this machine ready? Versions, torch backend and device, threads, compatibility patch.
internal static class DoctorCommand
{
    public static Command Create(TextWriter stdout)
    {
        var cmd = new Command("doctor", "Check that TorchSharp loads and report versions, device, threads and the libstdc++ compatibility patch.");
        cmd.SetAction(_ =>
        {
            var r = TorchEnvironment.Inspect();
            Serilog.Log.Information("Doctor report {@Report}", r);
            stdout.WriteLine($"cdiff            {r.CdiffVersion}");
            stdout.WriteLine($".NET             {r.DotnetVersion}");
            stdout.WriteLine($"OS               {r.OperatingSystem}");
            stdout.WriteLine($"TorchSharp       {r.TorchSharpVersion} (backend bundle: {r.TorchBackend})");
            stdout.WriteLine($"device           {r.Device}");
            stdout.WriteLine($"CUDA available   {(r.CudaAvailable ? "yes" : "no")}");
            stdout.WriteLine($"threads          {r.Threads}");
            stdout.WriteLine($"libstdc++        {r.HostLibStdCxx}");
            stdout.WriteLine($"compat patch     {r.CompatPatch}");
            using (TorchSharp.torch.NewDisposeScope())
                stdout.WriteLine($"tensor check     {(TorchSharp.torch.ones(2, 2).sum().item<float>() == 4f ? "ok" : "FAILED")}");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
