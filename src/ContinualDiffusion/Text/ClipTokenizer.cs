using Microsoft.ML.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace ContinualDiffusion.Text;

/// CLIP's tokenizer as transformers 4.40's slow CLIPTokenizer runs it for Stable Diffusion (without ftfy).
///
/// Pipeline for one prompt:
///   1. cut out added tokens (<|startoftext|>, <|endoftext|>, the pad token, concept tokens like <v1>)
///      verbatim and case-sensitively — `AddedTokenSplitter`;
///   2. for each text piece, the Microsoft.ML.Tokenizers `BpeTokenizer` configured as CLIP:
///      `ClipTextNormalizer` (BasicTokenizer clean-up + lower-case), `ClipPreTokenizer` (CLIP's word regex),
///      byte-level mapping (GPT-2/CLIP bytes_to_unicode), end-of-word suffix "</w>", the merges from merges.txt;
///   3. keep at most model_max_length - 2 tokens, add bos/eos, pad to model_max_length with the pad token.
///
/// Concept tokens get ids after the vocabulary (49408, 49409, ... for SD) in the order they are added.
public sealed class ClipTokenizer
{
    public const string EndOfWordSuffix = "</w>";

    private readonly BpeTokenizer _bpe;
    private readonly IReadOnlyDictionary<string, int> _vocab;
    private readonly Dictionary<string, long> _addedTokens;
    private readonly List<string> _conceptTokens = [];
    private readonly Dictionary<string, long> _embeddingWords = new(StringComparer.OrdinalIgnoreCase); // plain words
    private readonly Dictionary<long, long[]> _expansions = []; // first id of a multi-vector word → all its ids
    private int _embeddingVectors;
    private AddedTokenSplitter _splitter;

    public long BosId { get; }
    public long EosId { get; }
    public long PadId { get; }
    public long UnknownId { get; }
    public string PadToken { get; }
    public int ModelMaxLength { get; }

    /// Size of the base vocabulary plus the added tokens from the folder (49408 for SD): the first id a
    /// concept token can get, and the text encoder's embedding row count before concepts are added.
    public int BaseVocabularySize { get; }

    /// Ids in use including concept tokens and embedding words: the embedding matrix needs this many rows.
    public int VocabularySize => BaseVocabularySize + _conceptTokens.Count + _embeddingVectors;

    /// Concept tokens in the order they were added (their ids are BaseVocabularySize + index).
    public IReadOnlyList<string> ConceptTokens => _conceptTokens;

    private ClipTokenizer(ClipTokenizerFiles files, string source)
    {
        _vocab = files.Vocabulary;
        ModelMaxLength = files.ModelMaxLength;
        BosId = IdOf(files.BosToken, "bos_token", source);
        EosId = IdOf(files.EosToken, "eos_token", source);
        PadId = IdOf(files.PadToken, "pad_token", source);
        UnknownId = IdOf(files.UnknownToken, "unk_token", source);
        PadToken = files.PadToken;

        _addedTokens = CollectAddedTokens(files, source);
        BaseVocabularySize = (int)Math.Max(_vocab.Values.Max(), _addedTokens.Values.Max()) + 1;
        _splitter = new AddedTokenSplitter(_addedTokens);
        _bpe = CreateBpe(files, source);
    }

    /// Loads a diffusers `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json and/or special_tokens_map.json).
    public static ClipTokenizer FromFolder(string tokenizerDir)
    {
        var files = ClipTokenizerFiles.Read(tokenizerDir);
        return new ClipTokenizer(files, tokenizerDir);
    }

    public static ClipTokenizer FromFiles(ClipTokenizerFiles files, string source = "tokenizer") => new(files, source);

    /// Registers a concept token and returns its id (the next free id). The token must look like
    /// <name> (see `ConceptTokens.IsAddable`) and must not already be a vocabulary entry or added token.
    public long AddConceptToken(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (!Text.ConceptTokens.IsAddable(token))
            throw new ArgumentException($"concept token '{token}': expected a single bracketed word such as <v1>", nameof(token));
        if (_addedTokens.ContainsKey(token) || _vocab.ContainsKey(token))
            throw new ArgumentException($"concept token '{token}' is already in the tokenizer", nameof(token));
        if (_embeddingVectors > 0) // keeps concept ids at BaseVocabularySize + index
            throw new InvalidOperationException($"concept token '{token}': concept tokens are added before embedding words");

        long id = VocabularySize;
        _conceptTokens.Add(token);
        _addedTokens[token] = id;
        _splitter = new AddedTokenSplitter(_addedTokens);
        return id;
    }

    /// Registers a textual-inversion embedding's word for `vectors` vectors and returns their ids (the next free ids,
    /// in order). The vectors are the tokens `word`, `word_1`, …; `word` in a prompt becomes all of them (see
    /// EmbeddingWords for the matching rules and the diffusers convention this follows). None of these names may be an
    /// added token or embedding word already.
    public IReadOnlyList<long> AddEmbeddingWord(string word, int vectors)
    {
        ArgumentNullException.ThrowIfNull(word);
        ArgumentOutOfRangeException.ThrowIfLessThan(vectors, 1);
        if (!EmbeddingWords.IsValid(word))
            throw new ArgumentException($"embedding word '{word}': expected {EmbeddingWords.Rule}", nameof(word));
        if (EmbeddingWordConflict(word, vectors) is { } taken)
            throw new ArgumentException($"'{taken}' is already a token of this model", nameof(word));
        var names = EmbeddingWords.VectorNames(word, vectors);
        bool bracketed = EmbeddingWords.IsBracketed(word);

        long first = VocabularySize;
        var ids = new long[vectors];
        for (int i = 0; i < vectors; i++)
        {
            ids[i] = first + i;
            if (bracketed) _addedTokens[names[i]] = ids[i];
            else _embeddingWords[names[i]] = ids[i];
        }
        if (vectors > 1) _expansions[first] = ids;
        _embeddingVectors += vectors;
        _splitter = new AddedTokenSplitter(_addedTokens, _embeddingWords);
        return ids;
    }

    /// The first of `word`, `word_1`, … (for `vectors` vectors) that is already an added token or embedding word, or null.
    public string? EmbeddingWordConflict(string word, int vectors) =>
        EmbeddingWords.VectorNames(word, vectors).FirstOrDefault(n => _addedTokens.ContainsKey(n) || _embeddingWords.ContainsKey(n));

    public bool TryGetConceptTokenId(string token, out long id)
    {
        id = 0;
        return _conceptTokens.Contains(token) && _addedTokens.TryGetValue(token, out id);
    }

    /// <vN>-like words in the prompt that are not registered concept tokens (case-insensitive pattern, so a
    /// mistyped <V1> is reported), in order of first appearance.
    public IReadOnlyList<string> UnknownConceptTokens(string prompt) =>
        Text.ConceptTokens.FindReferences(prompt).Where(t => !_addedTokens.ContainsKey(t)).ToList();

    /// Throws naming the unknown concept tokens and the known ones, for a CLI error message.
    public void ThrowIfUnknownConceptTokens(string prompt)
    {
        var unknown = UnknownConceptTokens(prompt);
        if (unknown.Count == 0) return;
        string known = _conceptTokens.Count == 0 ? "none" : string.Join(", ", _conceptTokens);
        throw new InputException($"prompt uses unknown concept token(s) {string.Join(", ", unknown)}; known concept tokens: {known}");
    }

    /// The prompt's token ids without bos/eos, padding or truncation.
    public IReadOnlyList<long> EncodeUnpadded(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = new List<long>();
        foreach (var piece in _splitter.Split(prompt))
        {
            if (piece.AddedTokenId is long id)
            {
                if (_expansions.TryGetValue(id, out var all)) ids.AddRange(all);
                else ids.Add(id);
            }
            else foreach (int t in _bpe.EncodeToIds(piece.Text)) ids.Add(t);
        }
        return ids;
    }

    /// The BPE token strings (byte-level form, e.g. "photo</w>") the prompt becomes; added tokens appear verbatim.
    public IReadOnlyList<string> BpeTokens(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokens = new List<string>();
        foreach (var piece in _splitter.Split(prompt))
        {
            if (piece.AddedTokenId is long id)
            {
                tokens.Add(piece.Text);
                if (_expansions.TryGetValue(id, out var all)) for (int i = 1; i < all.Length; i++) tokens.Add($"{piece.Text}_{i}");
            }
            else tokens.AddRange(_bpe.EncodeToTokens(piece.Text, out _).Select(t => t.Value));
        }
        return tokens;
    }

    /// bos + at most ModelMaxLength-2 tokens + eos, padded with the pad token to ModelMaxLength.
    public TokenizedPrompt Encode(string prompt)
    {
        var tokens = EncodeUnpadded(prompt);
        int keep = Math.Min(tokens.Count, ModelMaxLength - 2);
        int unpadded = keep + 2;

        var ids = new long[ModelMaxLength];
        var mask = new long[ModelMaxLength];
        ids[0] = BosId;
        for (int i = 0; i < keep; i++) ids[i + 1] = tokens[i];
        ids[keep + 1] = EosId;
        for (int i = unpadded; i < ModelMaxLength; i++) ids[i] = PadId;
        for (int i = 0; i < unpadded; i++) mask[i] = 1;

        int dropped = tokens.Count - keep;
        return new TokenizedPrompt(ids, mask, unpadded, dropped > 0, dropped);
    }

    /// Input ids of several prompts as an int64 (N, ModelMaxLength) tensor.
    public Tensor EncodeBatch(IReadOnlyList<string> prompts) => ToTensor(prompts.Select(Encode).ToList());

    /// Stacks encoded prompts' input ids into an int64 (N, ModelMaxLength) tensor.
    public static Tensor ToTensor(IReadOnlyList<TokenizedPrompt> prompts)
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts to stack", nameof(prompts));
        int length = prompts[0].InputIds.Length;
        var flat = new long[prompts.Count * length];
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].InputIds.Length != length) throw new ArgumentException("prompts encoded with different lengths", nameof(prompts));
            prompts[i].InputIds.CopyTo(flat, i * length);
        }
        return torch.tensor(flat, new long[] { prompts.Count, length }, ScalarType.Int64);
    }

    private long IdOf(string token, string key, string source)
    {
        if (_vocab.TryGetValue(token, out int id)) return id;
        throw new TokenizerFileException($"{source}: {key} '{token}' is not in {ClipTokenizerFiles.VocabFileName}");
    }

    /// transformers 4.40 registers every special token (bos, eos, unk, pad) and every added_tokens_decoder
    /// entry as an added token that is cut out of the prompt before BPE. For SD 2.x (pad "!") this means a
    /// "!!" in a prompt becomes two "!" tokens, as it does in transformers 4.40.
    private Dictionary<string, long> CollectAddedTokens(ClipTokenizerFiles files, string source)
    {
        var added = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (id, content) in files.ExtraAddedTokens.OrderBy(t => t.Id))
        {
            if (content.Length == 0) throw new TokenizerFileException($"{source}: added token {id} has empty content");
            added[content] = id;
        }
        foreach (var (token, id) in new[] { (files.BosToken, BosId), (files.EosToken, EosId), (files.UnknownToken, UnknownId), (files.PadToken, PadId) })
            added.TryAdd(token, id);
        return added;
    }

    private static BpeTokenizer CreateBpe(ClipTokenizerFiles files, string source)
    {
        var options = new BpeOptions(files.Vocabulary)
        {
            Merges = files.Merges,
            Normalizer = ClipTextNormalizer.Instance,
            PreTokenizer = ClipPreTokenizer.Instance,
            // Upper-case variants of the special words survive the added-token split, are lower-cased by the
            // normalizer and kept whole by the pre-tokenizer; CLIP's BPE cache then maps them to their ids.
            SpecialTokens = new Dictionary<string, int>
            {
                [files.BosToken] = files.Vocabulary[files.BosToken],
                [files.EosToken] = files.Vocabulary[files.EosToken],
            },
            UnknownToken = files.UnknownToken,
            EndOfWordSuffix = EndOfWordSuffix,
            ByteLevel = true,
        };
        try { return BpeTokenizer.Create(options); }
        catch (InvalidOperationException e)
        {
            throw new TokenizerFileException($"{Path.Combine(source, ClipTokenizerFiles.MergesFileName)}: {e.Message}");
        }
    }
}
