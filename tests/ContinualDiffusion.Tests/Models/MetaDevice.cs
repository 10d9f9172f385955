using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Tests.Models;

/// Builds full-size models on PyTorch's `meta` device (shapes only, no storage) so SD-sized architectures can be
/// checked in milliseconds. TorchSharp's default device is process-wide, hence the non-parallel collection.
public static class MetaDevice
{
    public static readonly Device Meta = new(DeviceType.META);

    public static T Build<T>(Func<T> create)
    {
        var previous = torch.get_default_device();
        torch.set_default_device(Meta);
        try { return create(); }
        finally { torch.set_default_device(previous); }
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetaDeviceCollection
{
    public const string Name = "meta device (changes the process-wide default device)";
}
