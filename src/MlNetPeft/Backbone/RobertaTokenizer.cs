using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace MlNetPeft.Backbone;

/// <summary>
/// RoBERTa byte-level BPE (vocab.json + merges.txt, or tokenizer.json) through Microsoft.ML.Tokenizers, giving the ids
/// transformers' RobertaTokenizerFast gives: added tokens written in the text are those tokens, and model inputs are
/// laid out <c>&lt;s&gt; A &lt;/s&gt;</c> or <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, cut longest-first.
/// </summary>
public sealed class RobertaTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly AddedVocabulary _added;
    private readonly Lazy<LongWordBpe> _longWords;

    /// <summary>Builds the tokenizer from the bytes of vocab.json and merges.txt (kept, so a model zip can carry them)
    /// and the added tokens of its tokenizer.json, if any: RoBERTa's five special tokens are added where that list
    /// lacks them.</summary>
    public RobertaTokenizer(byte[] vocabJson, byte[] mergesTxt, string source = "tokenizer", IReadOnlyList<AddedToken>? addedTokens = null)
    {
        VocabJson = vocabJson;
        MergesTxt = mergesTxt;
        var vocab = ReadVocab(vocabJson, source);

        _added = new AddedVocabulary(AddedVocabulary.Assign(vocab, addedTokens ?? []));
        int Special(string token) => _added.Tokens.FirstOrDefault(t => t.Content == token)?.Id
            ?? throw new InvalidDataException($"{source}: vocab.json has no '{token}' token");
        BosId = Special("<s>");
        PadId = Special("<pad>");
        EosId = Special("</s>");
        VocabSize = Math.Max(vocab.Values.Max(), _added.Tokens.Max(t => t.Id)) + 1;

        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = MergeLines(mergesTxt).ToList(),
                ByteLevel = true,
                PreTokenizer = RobertaPreTokenizer.Instance,
            });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException) // its errors do not name the file
        {
            throw new InvalidDataException($"{source}: the merges do not fit the vocabulary ({e.Message})", e);
        }
        // Made on the first long word only, from the kept file bytes rather than a second vocabulary held all along.
        _longWords = new(() => new LongWordBpe(ReadVocab(vocabJson, source), MergeLines(mergesTxt)));
    }

    private static Dictionary<string, int> ReadVocab(byte[] vocabJson, string source)
    {
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(WithoutBom(vocabJson)) ?? throw new InvalidDataException("empty"); }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        { throw new InvalidDataException($"{source}: vocab.json is not a JSON object of token ids ({e.Message})", e); }
        var tokenOf = new Dictionary<int, string>();
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new InvalidDataException($"{source}: vocab.json gives '{token}' the negative id {id}");
            if (!tokenOf.TryAdd(id, token)) throw new InvalidDataException($"{source}: vocab.json gives id {id} to both '{tokenOf[id]}' and '{token}'");
        }
        return vocab;
    }

    /// <summary>The files a checkpoint directory's tokenizer is read from: its tokenizer.json where it has one (as
    /// transformers' fast tokenizer reads it), else vocab.json and merges.txt; the first one missing is named.</summary>
    public static string[] FilesIn(string directory)
    {
        string tokenizerJson = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(tokenizerJson)) return [tokenizerJson];
        string[] files = [Path.Combine(directory, "vocab.json"), Path.Combine(directory, "merges.txt")];
        foreach (var f in files)
            if (!File.Exists(f)) throw new FileNotFoundException($"tokenizer file not found: {f} (nor a tokenizer.json in its place)", f);
        RefuseAddedTokensWithoutTokenizerJson(directory);
        return files;
    }

    /// <summary>A slow tokenizer's save lists added tokens in added_tokens.json or tokenizer_config.json, whose flags
    /// transformers fills in by rules of its own; rather than guess them, such a directory is refused (RoBERTa's own
    /// special tokens aside).</summary>
    private static void RefuseAddedTokensWithoutTokenizerJson(string directory)
    {
        IEnumerable<string> Listed(string file, Func<JsonElement, IEnumerable<string>> contents)
        {
            if (!File.Exists(file)) return [];
            try
            {
                using var json = JsonDocument.Parse(File.ReadAllBytes(file));
                return contents(json.RootElement).ToList();
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            { throw new InvalidDataException($"{file}: not the JSON transformers writes ({e.Message})", e); }
        }
        string addedTokens = Path.Combine(directory, "added_tokens.json"), config = Path.Combine(directory, "tokenizer_config.json");
        var added = Listed(addedTokens, root => root.EnumerateObject().Select(p => p.Name))
            .Concat(Listed(config, root => root.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object
                ? decoder.EnumerateObject().Select(p => p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("content", out var c) ? c.GetString() ?? "" : "")
                : []))
            .Where(t => t.Length > 0 && !AddedVocabulary.IsRobertaSpecial(t)).Distinct().ToList();
        if (added.Count > 0)
            throw new InvalidDataException($"{directory} lists added tokens ({string.Join(", ", added.Take(5))}{(added.Count > 5 ? ", …" : "")}) " +
                "in added_tokens.json or tokenizer_config.json but has no tokenizer.json, which alone says how HF's tokenizers " +
                "find them: save the tokenizer with transformers' fast tokenizer (save_pretrained writes tokenizer.json)");
    }

    /// <summary>The tokenizer of a checkpoint directory (see <see cref="FilesIn"/>).</summary>
    public static RobertaTokenizer FromDirectory(string directory) => FilesIn(directory) switch
    {
        [var tokenizerJson] => FromTokenizerJson(File.ReadAllBytes(tokenizerJson), tokenizerJson),
        [var vocab, var merges] => new RobertaTokenizer(File.ReadAllBytes(vocab), File.ReadAllBytes(merges), directory),
        _ => throw new InvalidOperationException("unreachable"),
    };

    /// <summary>
    /// The tokenizer a HF tokenizer.json describes, where that is a byte-level BPE (RoBERTa's): its model's vocabulary
    /// and merges (written as "a b" strings or, by newer tokenizers, as [a, b] pairs) become the vocab.json and
    /// merges.txt a model zip keeps; its added tokens are kept as they are.
    /// </summary>
    public static RobertaTokenizer FromTokenizerJson(byte[] tokenizerJson, string source)
    {
        InvalidDataException Bad(string what) => new($"{source}: {what}");
        try
        {
            using var document = JsonDocument.Parse(tokenizerJson);
            var root = document.RootElement;
            if (!root.TryGetProperty("model", out var model) || !model.TryGetProperty("type", out var type) || type.GetString() != "BPE")
                throw Bad("its model is not a BPE, so it is not a RoBERTa tokenizer");
            // RoBERTa's pre-tokenizer: ByteLevel with GPT-2's split rule and no added prefix space.
            if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object
                || !pre.TryGetProperty("type", out var preType) || preType.GetString() != "ByteLevel"
                || (pre.TryGetProperty("use_regex", out var regex) && regex.ValueKind == JsonValueKind.False))
                throw Bad("its pre-tokenizer is not RoBERTa's (ByteLevel, splitting as GPT-2)");
            if (pre.TryGetProperty("add_prefix_space", out var prefix) && prefix.ValueKind == JsonValueKind.True)
                throw Bad("its pre-tokenizer adds a prefix space, which RoBERTa's tokenizer (and this one) does not");
            if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
                throw Bad("it has a normalizer, which RoBERTa's tokenizer (and this one) does not");
            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object
                || !model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array)
                throw Bad("its model has no vocab object or merges list");
            var lines = new StringBuilder("#version: 0.2\n");
            foreach (var merge in merges.EnumerateArray())
            {
                string[] parts = merge.ValueKind == JsonValueKind.String ? merge.GetString()!.Split(' ')
                    : merge.ValueKind == JsonValueKind.Array ? merge.EnumerateArray().Select(p => p.GetString() ?? "").ToArray() : [];
                if (parts.Length != 2 || parts.Any(p => p.Length == 0 || p.Contains(' ')))
                    throw Bad($"merge {merge} is not two symbols");
                lines.Append(parts[0]).Append(' ').Append(parts[1]).Append('\n');
            }
            var added = root.TryGetProperty("added_tokens", out var list) && list.ValueKind != JsonValueKind.Null
                ? AddedVocabulary.Read(list, source) : null;
            var tokenizer = new RobertaTokenizer(Encoding.UTF8.GetBytes(vocab.GetRawText()), Encoding.UTF8.GetBytes(lines.ToString()), source, added);
            if (root.TryGetProperty("post_processor", out var post)) tokenizer.CheckPostProcessor(post, source);
            return tokenizer;
        }
        // Invalid UTF-8 inside a string surfaces only when the string is read, as an InvalidOperationException.
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>The model input's layout is RoBERTa's (RobertaProcessing with &lt;s&gt; and &lt;/s&gt;); any other
    /// post-processor would lay it out otherwise, so it is refused by name.</summary>
    private void CheckPostProcessor(JsonElement post, string source)
    {
        string type = post.ValueKind == JsonValueKind.Object && post.TryGetProperty("type", out var t) ? t.GetString() ?? "?" : post.ValueKind.ToString();
        if (type != "RobertaProcessing")
            throw new InvalidDataException($"{source}: its post-processor is {type}, not RoBERTa's (RobertaProcessing: <s> A </s></s> B </s>)");
        int? Id(string name) => post.TryGetProperty(name, out var pair) && pair.ValueKind == JsonValueKind.Array && pair.GetArrayLength() == 2
            && pair[1].TryGetInt32(out int id) ? id : null;
        string Written(string name) => post.TryGetProperty(name, out var pair) ? pair.GetRawText() : "missing";
        if (Id("cls") != BosId || Id("sep") != EosId)
            throw new InvalidDataException($"{source}: its post-processor's cls and sep are {Written("cls")} and {Written("sep")}, " +
                $"not <s> ({BosId}) and </s> ({EosId})");
    }

    /// <summary>This tokenizer as a HF tokenizer.json (RobertaTokenizerFast's layout), which transformers' AutoTokenizer
    /// loads with the same vocabulary, merges and added tokens.</summary>
    public byte[] ToTokenizerJson()
    {
        var merges = MergeLines(MergesTxt).Select(l => (JsonNode)new JsonArray(l.Split(' ').Select(p => (JsonNode)p!).ToArray()));
        var byteLevel = (bool prefix) => new JsonObject
        {
            ["type"] = "ByteLevel", ["add_prefix_space"] = prefix, ["trim_offsets"] = true, ["use_regex"] = true,
        };
        string Content(int id) => _added.Tokens.First(t => t.Id == id).Content;
        return Encoding.UTF8.GetBytes(new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = _added.ToJson(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel(false),
            ["post_processor"] = new JsonObject
            {
                ["type"] = "RobertaProcessing",
                ["sep"] = new JsonArray(Content(EosId), EosId),
                ["cls"] = new JsonArray(Content(BosId), BosId),
                ["trim_offsets"] = true,
                ["add_prefix_space"] = false,
            },
            ["decoder"] = byteLevel(true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = JsonNode.Parse(WithoutBom(VocabJson)),
                ["merges"] = new JsonArray(merges.ToArray()),
            },
        }.ToJsonString());
    }

    private static ReadOnlySpan<byte> WithoutBom(byte[] utf8) =>
        utf8.AsSpan().StartsWith(Encoding.UTF8.Preamble) ? utf8.AsSpan(Encoding.UTF8.Preamble.Length) : utf8;

    /// <summary>merges.txt's merges ("a b"), without its #version line.</summary>
    private static IEnumerable<string> MergeLines(byte[] mergesTxt) =>
        Encoding.UTF8.GetString(WithoutBom(mergesTxt)).Split('\n').Select(l => l.TrimEnd('\r'))
            .Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal));

    /// <summary>The added tokens (RoBERTa's special tokens included) as tokenizer.json lists them, for a model zip.</summary>
    public byte[] AddedTokensJson() => Encoding.UTF8.GetBytes(_added.ToJson().ToJsonString());

    /// <summary>Reads <see cref="AddedTokensJson"/> back.</summary>
    public static List<AddedToken> ReadAddedTokens(byte[] json, string source)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return AddedVocabulary.Read(document.RootElement, source);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) // the latter: invalid UTF-8 in a string
        {
            throw new InvalidDataException($"{source}: added tokens are not valid JSON ({e.Message})", e);
        }
    }

    public IReadOnlyList<AddedToken> AddedTokens => _added.Tokens;
    public byte[] VocabJson { get; }
    public byte[] MergesTxt { get; }
    public int BosId { get; }
    public int PadId { get; }
    public int EosId { get; }
    public int VocabSize { get; }

    /// <summary>Token ids of a text, without added special tokens ("Hello world" → 31414, 232). As in transformers,
    /// an added token written in the text ("&lt;/s&gt;", "&lt;mask&gt;", or one a user added) is that token, and the
    /// text either side of it is encoded on its own.</summary>
    public IReadOnlyList<int> EncodeText(string text)
    {
        if (!_added.MayOccurIn(text)) return EncodeWords(text);
        var ids = new List<int>();
        foreach (var (start, end, id) in _added.Split(text))
            if (id is int token) ids.Add(token);
            else if (end > start) ids.AddRange(EncodeWords(text.AsSpan(start, end - start)));
        return ids;
    }

    /// <summary>BPE ids of text without added tokens: Microsoft.ML.Tokenizers', except that a pre-token longer than
    /// <see cref="LongWordBpe.MinLength"/> characters is merged by <see cref="LongWordBpe"/> (same ids, without the
    /// library's superlinear time on such words).</summary>
    private IReadOnlyList<int> EncodeWords(ReadOnlySpan<char> text)
    {
        if (!MayHoldLongWord(text)) return _bpe.EncodeToIds(text);
        var words = RobertaPreTokenizer.Instance.PreTokenize(text).ToList();
        if (words.All(w => w.Length <= LongWordBpe.MinLength)) return _bpe.EncodeToIds(text);
        var ids = new List<int>();
        foreach (var (offset, length) in words)
            ids.AddRange(WordIds(text.Slice(offset, length)));
        return ids;
    }

    /// <summary>Whether a pre-token of <paramref name="text"/> may be longer than <see cref="LongWordBpe.MinLength"/>: a
    /// pre-token lies inside one run of whitespace or of other characters (with one space before it), so a text without
    /// such a run has none. A linear scan, cheaper than pre-tokenizing; a miss would only cost time, not change ids.</summary>
    private static bool MayHoldLongWord(ReadOnlySpan<char> text)
    {
        if (text.Length <= LongWordBpe.MinLength) return false;
        int run = 0;
        bool inSpace = false;
        foreach (char c in text)
        {
            bool space = char.IsWhiteSpace(c);
            run = space == inSpace ? run + 1 : 1;
            inSpace = space;
            if (run >= LongWordBpe.MinLength) return true;
        }
        return false;
    }

    /// <summary>BPE ids of one pre-token.</summary>
    private IReadOnlyList<int> WordIds(ReadOnlySpan<char> word) =>
        word.Length > LongWordBpe.MinLength ? _longWords.Value.Encode(word) : _bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false);

    /// <summary>
    /// Model input for one example. Pairs are joined as HF does (B gets no added leading space), and when too long
    /// they are cut as HF's tokenizers (0.23) cut them ("longest_first"): the longer text alone where that is enough,
    /// else both to half the room, an odd token going to the longer (to the second where they are as long).
    /// </summary>
    public int[] Encode(string first, string? second, int maxLength)
    {
        int room = maxLength - (second is null ? 2 : 4);
        if (room < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), $"MaxSequenceLength {maxLength} leaves no room for text");
        var a = EncodeUpTo(first, maxLength);
        var b = second is null ? null : EncodeUpTo(second, maxLength);
        var (keepA, keepB) = LongestFirst(a.Count, b?.Count ?? 0, room);
        var ids = new int[keepA + keepB + (b is null ? 2 : 4)];
        int n = 0;
        ids[n++] = BosId;
        for (int i = 0; i < keepA; i++) ids[n++] = a[i];
        ids[n++] = EosId;
        if (b is not null)
        {
            ids[n++] = EosId;
            for (int i = 0; i < keepB; i++) ids[n++] = b[i];
            ids[n++] = EosId;
        }
        return ids;
    }

    /// <summary>
    /// A text's ids as far as tokenizers 0.23 reads a text it will cut to <paramref name="limit"/>: it stops after the
    /// word that brings the count to the limit (an added token counts without stopping it). So a long document costs
    /// what its first words cost, and the count is the length "longest_first" compares, on which the side an odd token
    /// goes to depends when both texts of a pair are that long. A text with fewer tokens comes back whole.
    /// </summary>
    private IReadOnlyList<int> EncodeUpTo(string text, int limit)
    {
        // Every token covers at least one UTF-8 byte, so a text of fewer bytes cannot reach the limit.
        if (text.Length < limit && Encoding.UTF8.GetByteCount(text) < limit) return EncodeText(text);
        var ids = new List<int>();
        var pieces = _added.MayOccurIn(text) ? _added.Split(text) : [(0, text.Length, null)];
        foreach (var (start, end, id) in pieces)
        {
            if (id is int token) { ids.Add(token); continue; }
            var piece = text.AsSpan(start, end - start);
            foreach (var (offset, length) in RobertaPreTokenizer.Instance.PreTokenize(piece))
            {
                ids.AddRange(WordIds(piece.Slice(offset, length)));
                if (ids.Count >= limit) return ids;
            }
        }
        return ids;
    }

    /// <summary>How many tokens of each text fit in <paramref name="room"/>, as HF's tokenizers (truncation.rs) decide.</summary>
    private static (int First, int Second) LongestFirst(int first, int second, int room)
    {
        if (first + second <= room) return (first, second);
        int shorter = Math.Min(first, second), longer = Math.Max(first, second);
        longer = shorter > room ? shorter : Math.Max(shorter, room - shorter);
        if (shorter + longer > room) (shorter, longer) = (room / 2, room / 2 + room % 2);
        return first > second ? (longer, shorter) : (shorter, longer);
    }
}
