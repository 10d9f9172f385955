// Makes TorchSharp 0.107.0's libLibTorchSharp.so load on hosts whose libstdc++ stops at GLIBCXX_3.4.30
// (Debian 12, Ubuntu 22.04). The library asks GLIBCXX_3.4.32 for exactly one symbol,
// std::ios_base_library_init() (new in GCC 13), which only forces iostream initialisation that the older
// libstdc++ performs on its own. We re-point that undefined symbol at std::get_new_handler(), a harmless
// no-argument function every libstdc++ exports, drop its version requirement and mark the GLIBCXX_3.4.32
// requirement weak, so the dynamic loader accepts the file.
//
// This file is compiled twice: into the MSBuild inline task (build/LibStdCxxCompat.targets) and into the
// unit tests (with ELF_COMPAT_NO_MSBUILD defined), so the byte-level logic is tested on real and broken files.
#nullable enable
using System;
using System.IO;
using System.Text;

namespace ContinualDiffusion.Build
{
    public enum ElfPatchOutcome { NotNeeded, Patched, AlreadyPatched }

    public sealed class ElfFormatException : Exception
    {
        public ElfFormatException(string message) : base(message) { }
    }

    public static class ElfGlibcxxCompat
    {
        public const string MissingSymbol = "_ZSt21ios_base_library_initv";
        public const string ReplacementSymbol = "_ZSt15get_new_handlerv";
        public const string MissingVersion = "GLIBCXX_3.4.32";
        private const ushort VerFlagWeak = 0x2;
        private const uint ShtDynsym = 11, ShtStrtab = 3, ShtGnuVersym = 0x6fffffff, ShtGnuVerneed = 0x6ffffffe;

        /// True when the host's libstdc++ already provides GLIBCXX_3.4.32 (then no patch is needed).
        public static bool HostHasVersion(string libstdcxxPath) =>
            IndexOf(File.ReadAllBytes(libstdcxxPath), Encoding.ASCII.GetBytes(MissingVersion + "\0"), 0) >= 0;

        /// Finds the host's libstdc++.so.6 in the usual multiarch and lib64 locations, or null.
        public static string? FindHostLibStdCxx()
        {
            string[] candidates =
            {
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/lib/aarch64-linux-gnu/libstdc++.so.6",
                "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
            };
            foreach (var c in candidates)
                if (File.Exists(c)) return c;
            return null;
        }

        /// Patches the file in place (temp file + rename, so a failure never leaves half a library).
        public static ElfPatchOutcome PatchFile(string path)
        {
            var bytes = File.ReadAllBytes(path);
            var outcome = Patch(bytes, path);
            if (outcome != ElfPatchOutcome.Patched) return outcome;
            var tmp = path + ".cdiff-tmp";
            File.WriteAllBytes(tmp, bytes);
            File.Replace(tmp, path, null); // rename(2) on Unix: readers see the old or the new file, never half

            return outcome;
        }

        /// Inspects without changing anything.
        public static ElfPatchOutcome Inspect(string path) => Patch(File.ReadAllBytes(path), path, dryRun: true);

        /// Applies the three edits to an in-memory ELF image. Throws ElfFormatException for anything it
        /// does not recognise rather than guess.
        public static ElfPatchOutcome Patch(byte[] elf, string name, bool dryRun = false)
        {
            var f = new ElfFile(elf, name);
            var dynsym = f.RequireSection(ShtDynsym, ".dynsym");
            var dynstr = f.Section(dynsym.Link);
            if (dynstr.Type != ShtStrtab) throw f.Error(".dynsym does not link to a string table");
            var versym = f.FindSection(ShtGnuVersym);
            var verneed = f.FindSection(ShtGnuVerneed);
            if (versym is null || verneed is null) return ElfPatchOutcome.NotNeeded;
            if (versym.Size / 2 != dynsym.Size / 24) throw f.Error(".gnu.version and .dynsym sizes disagree");

            var aux = f.FindVernaux(verneed, dynstr, MissingVersion);
            if (aux is null) return ElfPatchOutcome.NotNeeded;

            int symIndex = f.FindSymbolByName(dynsym, dynstr, MissingSymbol);
            if (symIndex < 0)
            {
                // Already re-pointed: the name is gone and the requirement is weak.
                bool weak = (f.U16(aux.Value + 4) & VerFlagWeak) != 0;
                if (weak && f.FindSymbolByName(dynsym, dynstr, ReplacementSymbol) >= 0) return ElfPatchOutcome.AlreadyPatched;
                throw f.Error($"requires {MissingVersion} but not through {MissingSymbol}; this patch does not cover it");
            }

            long symOffset = dynsym.Offset + symIndex * 24L;
            long nameOffset = dynstr.Offset + f.U32(symOffset);
            if (f.U16(symOffset + 6) != 0) throw f.Error($"{MissingSymbol} is defined here, expected an undefined reference");
            long verIndexOffset = versym.Offset + symIndex * 2L;
            ushort verIndex = (ushort)(f.U16(verIndexOffset) & 0x7fff);
            if (verIndex != f.U16(aux.Value + 6)) throw f.Error($"{MissingSymbol} is not bound to {MissingVersion}");
            f.EnsureNoSharedSuffix(dynsym, dynstr, nameOffset, MissingSymbol.Length);
            if (dryRun) return ElfPatchOutcome.Patched;

            // 1. rename in place: the replacement is shorter, pad with NULs.
            var replacement = Encoding.ASCII.GetBytes(ReplacementSymbol);
            Array.Clear(elf, (int)nameOffset, MissingSymbol.Length);
            Array.Copy(replacement, 0, elf, nameOffset, replacement.Length);
            // 2. the symbol becomes unversioned (global).
            f.W16(verIndexOffset, 1);
            // 3. the version requirement becomes weak: a missing GLIBCXX_3.4.32 is then only a warning for ld.so.
            f.W16(aux.Value + 4, (ushort)(f.U16(aux.Value + 4) | VerFlagWeak));
            return ElfPatchOutcome.Patched;
        }

        internal static int IndexOf(byte[] hay, byte[] needle, int start)
        {
            for (int i = start; i <= hay.Length - needle.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && hay[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        private sealed class Section
        {
            public uint Type; public long Offset; public long Size; public int Link;
        }

        /// Minimal, bounds-checked ELF64 little-endian reader for the handful of structures we touch.
        private sealed class ElfFile
        {
            private readonly byte[] _b;
            private readonly string _name;
            private readonly Section[] _sections;

            public ElfFile(byte[] bytes, string name)
            {
                _b = bytes; _name = name;
                if (bytes.Length < 64 || bytes[0] != 0x7f || bytes[1] != (byte)'E' || bytes[2] != (byte)'L' || bytes[3] != (byte)'F')
                    throw Error("not an ELF file");
                if (bytes[4] != 2) throw Error("not a 64-bit ELF file");
                if (bytes[5] != 1) throw Error("not a little-endian ELF file");
                if (U16(16) != 3) throw Error("not a shared object (e_type != ET_DYN)");
                long shoff = (long)U64(0x28);
                int shentsize = U16(0x3a), shnum = U16(0x3c);
                if (shentsize != 64 || shnum == 0) throw Error("unexpected section header table");
                Check(shoff, (long)shnum * 64, "section header table");
                _sections = new Section[shnum];
                for (int i = 0; i < shnum; i++)
                {
                    long h = shoff + i * 64L;
                    var s = new Section { Type = U32(h + 4), Offset = (long)U64(h + 0x18), Size = (long)U64(h + 0x20), Link = (int)U32(h + 0x28) };
                    if (s.Type != 8 /* NOBITS */) Check(s.Offset, s.Size, $"section {i}");
                    _sections[i] = s;
                }
            }

            public ElfFormatException Error(string what) => new($"{_name}: {what}");

            private void Check(long offset, long size, string what)
            {
                if (offset < 0 || size < 0 || offset + size > _b.Length) throw Error($"{what} lies outside the file");
            }

            public ushort U16(long o) { Check(o, 2, "read"); return (ushort)(_b[o] | _b[o + 1] << 8); }
            public uint U32(long o) { Check(o, 4, "read"); return BitConverter.ToUInt32(_b, (int)o); }
            public ulong U64(long o) { Check(o, 8, "read"); return BitConverter.ToUInt64(_b, (int)o); }
            public void W16(long o, ushort v) { Check(o, 2, "write"); _b[o] = (byte)v; _b[o + 1] = (byte)(v >> 8); }

            public Section Section(int index) =>
                index > 0 && index < _sections.Length ? _sections[index] : throw Error($"section index {index} out of range");

            public Section? FindSection(uint type)
            {
                Section? found = null;
                foreach (var s in _sections)
                    if (s.Type == type)
                    {
                        if (found is not null) throw Error($"more than one section of type 0x{type:x}");
                        found = s;
                    }
                return found;
            }

            public Section RequireSection(uint type, string label) => FindSection(type) ?? throw Error($"no {label} section");

            private string ReadString(Section strtab, long rel)
            {
                if (rel < 0 || rel >= strtab.Size) throw Error($"string offset {rel} outside the string table");
                long start = strtab.Offset + rel, end = start;
                while (end < strtab.Offset + strtab.Size && _b[end] != 0) end++;
                if (end == strtab.Offset + strtab.Size) throw Error("unterminated string in string table");
                return Encoding.ASCII.GetString(_b, (int)start, (int)(end - start));
            }

            public int FindSymbolByName(Section dynsym, Section dynstr, string name)
            {
                int count = (int)(dynsym.Size / 24);
                for (int i = 1; i < count; i++)
                    if (ReadString(dynstr, U32(dynsym.Offset + i * 24L)) == name) return i;
                return -1;
            }

            /// File offset of the Vernaux entry naming `version`, or null.
            /// Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
            /// Vernaux: vna_hash u32, vna_flags u16 (+4), vna_other u16 (+6, the version index), vna_name u32, vna_next u32.
            public long? FindVernaux(Section verneed, Section dynstr, string version)
            {
                long need = verneed.Offset;
                for (int guard = 0; guard < 4096; guard++)
                {
                    if (U16(need) != 1) throw Error($"unknown .gnu.version_r entry version {U16(need)}");
                    int cnt = U16(need + 2);
                    long aux = need + U32(need + 8);
                    for (int k = 0; k < cnt; k++)
                    {
                        if (ReadString(dynstr, U32(aux + 8)) == version) return aux;
                        uint next = U32(aux + 12);
                        if (next == 0) break;
                        aux += next;
                    }
                    uint nextNeed = U32(need + 12);
                    if (nextNeed == 0) return null;
                    need += nextNeed;
                }
                throw Error(".gnu.version_r chain does not end");
            }

            /// Linkers merge string-table tails; make sure no other name points inside the one we rewrite.
            public void EnsureNoSharedSuffix(Section dynsym, Section dynstr, long nameOffset, int length)
            {
                long lo = nameOffset - dynstr.Offset, hi = lo + length;
                int count = (int)(dynsym.Size / 24);
                int owners = 0;
                for (int i = 1; i < count; i++)
                {
                    long n = U32(dynsym.Offset + i * 24L);
                    if (n == lo) owners++;
                    else if (n > lo && n <= hi) throw Error("another symbol shares the name being rewritten");
                }
                if (owners != 1) throw Error("the name being rewritten is used by more than one symbol");
            }
        }
    }
}

#if !ELF_COMPAT_NO_MSBUILD
namespace ContinualDiffusion.Build
{
    /// MSBuild task: patches every given libLibTorchSharp.so when the host libstdc++ lacks GLIBCXX_3.4.32.
    public sealed class PatchLibTorchSharpForOldLibStdCxx : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required]
        public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

        /// TorchSharp's loader, when its first load fails, copies natives from the NuGet cache into
        /// <TorchSharp.dll dir>/cpu/ but skips files that already exist there. Seeding that folder with the
        /// patched copy means the fallback can never pick up an unpatched libLibTorchSharp.so.
        public string FallbackDir { get; set; } = "";

        public override bool Execute()
        {
            if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux) || Files.Length == 0) return true;
            var host = ElfGlibcxxCompat.FindHostLibStdCxx();
            if (host is null)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, "cdiff: no libstdc++.so.6 found on this host; TorchSharp natives left as shipped.");
                return true;
            }
            if (ElfGlibcxxCompat.HostHasVersion(host)) return true; // modern libstdc++: nothing to do, say nothing
            int patched = 0, already = 0;
            foreach (var item in Files)
            {
                try
                {
                    switch (ElfGlibcxxCompat.PatchFile(item.ItemSpec))
                    {
                        case ElfPatchOutcome.Patched: patched++; break;
                        case ElfPatchOutcome.AlreadyPatched: already++; break;
                    }
                }
                catch (ElfFormatException e)
                {
                    Log.LogError($"cdiff: refusing to patch an ELF file it does not recognise: {e.Message}");
                    return false;
                }
            }
            if (FallbackDir.Length > 0)
            {
                Directory.CreateDirectory(FallbackDir);
                var seeded = Path.Combine(FallbackDir, "libLibTorchSharp.so");
                var tmp = seeded + ".cdiff-tmp";
                File.Copy(Files[0].ItemSpec, tmp, overwrite: true);
                if (File.Exists(seeded)) File.Replace(tmp, seeded, null); else File.Move(tmp, seeded);
            }
            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                $"cdiff: {host} lacks {ElfGlibcxxCompat.MissingVersion}; libLibTorchSharp.so compatibility patch: {patched} patched, {already} already patched.");
            return true;
        }
    }
}
#endif
