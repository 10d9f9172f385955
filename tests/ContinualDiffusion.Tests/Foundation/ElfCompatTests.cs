using ContinualDiffusion.Build;

namespace ContinualDiffusion.Tests.Foundation;

/// The GLIBCXX_3.4.32 compatibility patch (build/LibStdCxxCompat), exercised on the real TorchSharp native.
public class ElfCompatTests
{
    private static string PristineNative()
    {
        var home = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                   ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var path = Path.Combine(home, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"expected the restored TorchSharp package at {path}");
        return path;
    }

    [Fact]
    public void Patch_rewrites_the_shipped_library_once_and_is_idempotent()
    {
        var bytes = File.ReadAllBytes(PristineNative());
        var original = (byte[])bytes.Clone();
        Assert.Equal(ElfPatchOutcome.Patched, ElfGlibcxxCompat.Patch(bytes, "copy"));
        Assert.Equal(original.Length, bytes.Length);
        // The dynamic string table no longer names it (a static .strtab copy may remain; ld.so never reads that).
        Assert.Equal(Occurrences(original, ElfGlibcxxCompat.MissingSymbol) - 1, Occurrences(bytes, ElfGlibcxxCompat.MissingSymbol));
        int changed = bytes.Zip(original).Count(p => p.First != p.Second);
        Assert.InRange(changed, 3, 40); // a renamed string, one version index, one flag: nothing else moves
        var again = (byte[])bytes.Clone();
        Assert.Equal(ElfPatchOutcome.AlreadyPatched, ElfGlibcxxCompat.Patch(again, "copy"));
        Assert.Equal(bytes, again);
    }

    private static int Occurrences(byte[] hay, string s)
    {
        var needle = System.Text.Encoding.ASCII.GetBytes(s + "\0");
        int n = 0;
        for (int i = ElfGlibcxxCompat.IndexOf(hay, needle, 0); i >= 0; i = ElfGlibcxxCompat.IndexOf(hay, needle, i + 1)) n++;
        return n;
    }

    [Fact]
    public void Dry_run_leaves_the_bytes_alone()
    {
        var bytes = File.ReadAllBytes(PristineNative());
        var original = (byte[])bytes.Clone();
        Assert.Equal(ElfPatchOutcome.Patched, ElfGlibcxxCompat.Patch(bytes, "copy", dryRun: true));
        Assert.Equal(original, bytes);
    }

    [Fact]
    public void A_library_without_the_requirement_is_not_touched()
    {
        var libc = new[] { "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1" }.FirstOrDefault(File.Exists);
        if (libc is null) return; // only meaningful where the system zlib is present (always on Debian)
        var bytes = File.ReadAllBytes(libc);
        Assert.Equal(ElfPatchOutcome.NotNeeded, ElfGlibcxxCompat.Patch(bytes, libc));
    }

    [Theory]
    [InlineData(0)]       // not ELF at all
    [InlineData(1)]       // truncated after the ELF header
    [InlineData(2)]       // section header table pointing past the end
    public void Unrecognised_or_damaged_files_are_refused(int damage)
    {
        var bytes = File.ReadAllBytes(PristineNative());
        byte[] broken = damage switch
        {
            0 => System.Text.Encoding.ASCII.GetBytes("#!/bin/sh\necho not a library\n" + new string(' ', 64)),
            1 => bytes[..64],
            _ => Damage(bytes),
        };
        var e = Assert.Throws<ElfFormatException>(() => ElfGlibcxxCompat.Patch(broken, "broken.so"));
        Assert.StartsWith("broken.so: ", e.Message);
    }

    private static byte[] Damage(byte[] bytes)
    {
        var b = (byte[])bytes.Clone();
        BitConverter.GetBytes((ulong)b.Length + 100).CopyTo(b, 0x28); // e_shoff
        return b;
    }

    [Fact]
    public void The_built_output_carries_a_patched_native_when_the_host_needs_it()
    {
        var host = ElfGlibcxxCompat.FindHostLibStdCxx();
        if (host is null || ElfGlibcxxCompat.HostHasVersion(host)) return; // modern host: nothing is patched
        var native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.Equal(ElfPatchOutcome.AlreadyPatched, ElfGlibcxxCompat.Inspect(native));
        var seeded = Path.Combine(AppContext.BaseDirectory, "cpu", "libLibTorchSharp.so");
        Assert.Equal(ElfPatchOutcome.AlreadyPatched, ElfGlibcxxCompat.Inspect(seeded));
    }
}
