using System.Text.Json;

namespace ContinualDiffusion.Text;

/// The contents of a diffusers `tokenizer/` folder for CLIP, read and validated:
/// vocab.json (token -> id), merges.txt (BPE merges by rank), and the special tokens and
/// model_max_length from tokenizer_config.json / special_tokens_map.json.
public sealed record ClipTokenizerFiles(
    IReadOnlyDictionary<string, int> Vocabulary,
    IReadOnlyList<string> Merges,
    string BosToken,
    string EosToken,
    string PadToken,
    string UnknownToken,
    int ModelMaxLength,
    IReadOnlyList<(int Id, string Content)> ExtraAddedTokens)
{
    public const string VocabFileName = "vocab.json";
    public const string MergesFileName = "merges.txt";
    public const string TokenizerConfigFileName = "tokenizer_config.json";
    public const string SpecialTokensMapFileName = "special_tokens_map.json";

    /// CLIP's BPE tokenizer files bundled with cdiff (configs/tokenizer/clip/, copied next to the binaries): SD 1.x's
    /// tokenizer folder. Models that carry no tokenizer (single-file checkpoints) and new pretrained models use it.
    public static string BundledFolder => Path.Combine(AppContext.BaseDirectory, "configs", "tokenizer", "clip");

    /// transformers' CLIPTokenizer reads `merges[1 : 49152 - 256 - 2 + 1]`: it always skips the first line
    /// (the "#version" header) and uses at most this many merges.
    public const int MaxMerges = 49152 - 256 - 2;

    // CLIPTokenizer's constructor defaults, used for keys neither config file sets.
    private const string DefaultBos = "<|startoftext|>";
    private const string DefaultEos = "<|endoftext|>";
    private const int DefaultModelMaxLength = 77;

    public static ClipTokenizerFiles Read(string tokenizerDir)
    {
        if (!Directory.Exists(tokenizerDir))
            throw new TokenizerFileException($"{tokenizerDir}: tokenizer folder not found");
        var vocab = ReadVocabulary(Path.Combine(tokenizerDir, VocabFileName));
        var merges = ReadMerges(Path.Combine(tokenizerDir, MergesFileName));
        var settings = ReadSpecialTokenSettings(tokenizerDir);
        return new ClipTokenizerFiles(vocab, merges,
            settings.Get("bos_token") ?? DefaultBos,
            settings.Get("eos_token") ?? DefaultEos,
            settings.Get("pad_token") ?? DefaultEos,
            settings.Get("unk_token") ?? DefaultEos,
            settings.ModelMaxLength ?? DefaultModelMaxLength,
            settings.AddedTokens);
    }

    public static Dictionary<string, int> ReadVocabulary(string path)
    {
        RequireFile(path);
        Dictionary<string, int>? vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new TokenizerFileException($"{path}: expected a JSON object mapping tokens to integer ids ({e.Message})"); }
        if (vocab is null || vocab.Count == 0) throw new TokenizerFileException($"{path}: the vocabulary is empty");

        var seen = new Dictionary<int, string>();
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new TokenizerFileException($"{path}: token '{token}' has negative id {id}");
            if (!seen.TryAdd(id, token)) throw new TokenizerFileException($"{path}: id {id} is used by both '{seen[id]}' and '{token}'");
        }
        return vocab;
    }

    /// Merges as "left right" strings in rank order. Blank trailing lines are ignored; any other line must be
    /// exactly two whitespace-separated symbols.
    public static List<string> ReadMerges(string path)
    {
        RequireFile(path);
        var lines = File.ReadAllText(path).Trim().Split('\n');
        var merges = new List<string>(Math.Min(lines.Length, MaxMerges));
        for (int i = 1; i < lines.Length && merges.Count < MaxMerges; i++)
        {
            var parts = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new TokenizerFileException($"{path}: line {i + 1}: expected two space-separated symbols, got '{lines[i].TrimEnd('\r')}'");
            merges.Add(parts[0] + " " + parts[1]);
        }
        if (merges.Count == 0) throw new TokenizerFileException($"{path}: no merges after the header line");
        return merges;
    }

    private static void RequireFile(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFileException($"{path}: required tokenizer file not found");
    }

    /// tokenizer_config.json then special_tokens_map.json (whose entries win, as in transformers'
    /// from_pretrained). At least one must exist: the pad token differs between SD 1.x and 2.x, so guessing
    /// it would silently change the prompt encoding.
    private static SpecialTokenSettings ReadSpecialTokenSettings(string dir)
    {
        string configPath = Path.Combine(dir, TokenizerConfigFileName);
        string mapPath = Path.Combine(dir, SpecialTokensMapFileName);
        if (!File.Exists(configPath) && !File.Exists(mapPath))
            throw new TokenizerFileException($"{configPath}: not found (nor {SpecialTokensMapFileName}); one of them must name the special tokens");

        var settings = new SpecialTokenSettings();
        if (File.Exists(configPath)) settings.ReadTokenizerConfig(configPath);
        if (File.Exists(mapPath)) settings.ReadSpecialTokensMap(mapPath);
        return settings;
    }

    private sealed class SpecialTokenSettings
    {
        private static readonly string[] TokenKeys = ["bos_token", "eos_token", "pad_token", "unk_token"];
        private readonly Dictionary<string, string> _tokens = new(StringComparer.Ordinal);

        public int? ModelMaxLength { get; private set; }
        public List<(int Id, string Content)> AddedTokens { get; } = [];

        public string? Get(string key) => _tokens.GetValueOrDefault(key);

        public void ReadTokenizerConfig(string path)
        {
            using var doc = ParseObject(path);
            var root = doc.RootElement;
            ReadTokens(root, path);
            CheckTokenizerClass(root, path);
            if (root.TryGetProperty("model_max_length", out var max))
            {
                // transformers writes a huge sentinel (1e30) when no limit is known: CLIP always has one.
                if (max.ValueKind != JsonValueKind.Number || !max.TryGetInt32(out int n) || n < 3)
                    throw new TokenizerFileException($"{path}: key 'model_max_length': expected an integer of at least 3, got {max.GetRawText()}");
                ModelMaxLength = n;
            }
            if (root.TryGetProperty("added_tokens_decoder", out var added)) ReadAddedTokens(added, path);
        }

        public void ReadSpecialTokensMap(string path)
        {
            using var doc = ParseObject(path);
            ReadTokens(doc.RootElement, path);
        }

        private void ReadTokens(JsonElement root, string path)
        {
            foreach (var key in TokenKeys)
            {
                if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) continue;
                _tokens[key] = TokenContent(value, path, key);
            }
        }

        private static void CheckTokenizerClass(JsonElement root, string path)
        {
            if (root.TryGetProperty("tokenizer_class", out var cls) && cls.ValueKind == JsonValueKind.String
                && cls.GetString() is not ("CLIPTokenizer" or "CLIPTokenizerFast"))
                throw new TokenizerFileException($"{path}: key 'tokenizer_class': expected CLIPTokenizer, got '{cls.GetString()}'");
        }

        /// {"49406": {"content": "<|startoftext|>", ...}, ...}: kept so that a folder saved with extra added
        /// tokens (e.g. by a textual-inversion run) tokenizes as it did when saved.
        private void ReadAddedTokens(JsonElement added, string path)
        {
            if (added.ValueKind != JsonValueKind.Object)
                throw new TokenizerFileException($"{path}: key 'added_tokens_decoder': expected an object");
            foreach (var entry in added.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, out int id))
                    throw new TokenizerFileException($"{path}: key 'added_tokens_decoder.{entry.Name}': expected an integer id");
                AddedTokens.Add((id, TokenContent(entry.Value, path, $"added_tokens_decoder.{entry.Name}")));
            }
        }

        private static string TokenContent(JsonElement value, string path, string key)
        {
            if (value.ValueKind == JsonValueKind.String) return value.GetString()!;
            if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String)
                return c.GetString()!;
            throw new TokenizerFileException($"{path}: key '{key}': expected a string or an object with a string 'content'");
        }

        private static JsonDocument ParseObject(string path)
        {
            JsonDocument doc;
            try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
            catch (JsonException e) { throw new TokenizerFileException($"{path}: not valid JSON ({e.Message})"); }
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new TokenizerFileException($"{path}: expected a JSON object");
            }
            return doc;
        }
    }
}
