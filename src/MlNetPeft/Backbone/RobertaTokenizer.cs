using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace MlNetPeft.Backbone;

/// <summary>
/// RoBERTa byte-level BPE (vocab.json + merges.txt) through Microsoft.ML.Tokenizers, giving the ids transformers'
/// RobertaTokenizerFast gives: special tokens written in the text are those tokens, and model inputs are laid out
/// <c>&lt;s&gt; A &lt;/s&gt;</c> or <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, cut longest-first.
/// </summary>
public sealed class RobertaTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly SpecialToken[] _specials;

    /// <summary>A special token as HF's tokenizers find it in a text; <paramref name="StripLeft"/>: it also takes the
    /// whitespace before it (RoBERTa's &lt;mask&gt;, lstrip).</summary>
    private sealed record SpecialToken(string Text, int Id, bool StripLeft);

    /// <summary>Builds the tokenizer from the bytes of vocab.json and merges.txt (kept, so a model zip can carry them).</summary>
    public RobertaTokenizer(byte[] vocabJson, byte[] mergesTxt, string source = "tokenizer")
    {
        VocabJson = vocabJson;
        MergesTxt = mergesTxt;
        Dictionary<string, int> vocab;
        var json = vocabJson.AsSpan();
        if (json.StartsWith(Encoding.UTF8.Preamble)) json = json[Encoding.UTF8.Preamble.Length..];
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(json) ?? throw new InvalidDataException("empty"); }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        { throw new InvalidDataException($"{source}: vocab.json is not a JSON object of token ids ({e.Message})", e); }

        int Special(string token) => vocab.TryGetValue(token, out var id) ? id
            : throw new InvalidDataException($"{source}: vocab.json has no '{token}' token");
        BosId = Special("<s>");
        PadId = Special("<pad>");
        EosId = Special("</s>");
        VocabSize = vocab.Values.Max() + 1;
        _specials = new[] { "<s>", "<pad>", "</s>", "<unk>", "<mask>" }
            .Where(vocab.ContainsKey).Select(t => new SpecialToken(t, vocab[t], StripLeft: t == "<mask>")).ToArray();

        var merges = Encoding.UTF8.GetString(mergesTxt).TrimStart('\uFEFF').Split('\n')
            .Select(l => l.TrimEnd('\r'))
            .Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal))
            .ToList();
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = RobertaPreTokenizer.Instance,
        });
    }

    /// <summary>Loads vocab.json and merges.txt from a checkpoint directory or, where it has neither, the vocabulary
    /// and merges of its tokenizer.json.</summary>
    public static RobertaTokenizer FromDirectory(string directory)
    {
        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        string tokenizerJson = Path.Combine(directory, "tokenizer.json");
        if ((!File.Exists(vocab) || !File.Exists(merges)) && File.Exists(tokenizerJson))
            return FromTokenizerJson(File.ReadAllBytes(tokenizerJson), tokenizerJson);
        foreach (var f in new[] { vocab, merges })
            if (!File.Exists(f)) throw new FileNotFoundException($"tokenizer file not found: {f} (nor a tokenizer.json in its place)", f);
        return new RobertaTokenizer(File.ReadAllBytes(vocab), File.ReadAllBytes(merges), directory);
    }

    /// <summary>
    /// The tokenizer a HF tokenizer.json describes, where that is a byte-level BPE (RoBERTa's): its model's vocabulary
    /// and merges (written as "a b" strings or, by newer tokenizers, as [a, b] pairs) become the vocab.json and
    /// merges.txt a model zip keeps.
    /// </summary>
    public static RobertaTokenizer FromTokenizerJson(byte[] tokenizerJson, string source)
    {
        InvalidDataException Bad(string what) => new($"{source}: {what}");
        JsonDocument document;
        try { document = JsonDocument.Parse(tokenizerJson); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not JSON ({e.Message})", e); }
        using (document)
        {
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
            return new RobertaTokenizer(Encoding.UTF8.GetBytes(vocab.GetRawText()), Encoding.UTF8.GetBytes(lines.ToString()), source);
        }
    }

    public byte[] VocabJson { get; }
    public byte[] MergesTxt { get; }
    public int BosId { get; }
    public int PadId { get; }
    public int EosId { get; }
    public int VocabSize { get; }

    /// <summary>Token ids of a text, without added special tokens ("Hello world" → 31414, 232). As in transformers,
    /// a special token written in the text ("&lt;/s&gt;", "&lt;mask&gt;") is that token, and the text either side of
    /// it is encoded on its own.</summary>
    public IReadOnlyList<int> EncodeText(string text)
    {
        if (!text.Contains('<')) return _bpe.EncodeToIds(text);
        var ids = new List<int>();
        int start = 0;
        while (NextSpecial(text, start) is var (at, special) && special is not null)
        {
            var before = text.AsSpan(start, at - start);
            if (special.StripLeft) before = before.TrimEnd();
            if (!before.IsEmpty) ids.AddRange(_bpe.EncodeToIds(before));
            ids.Add(special.Id);
            start = at + special.Text.Length;
        }
        if (start < text.Length) ids.AddRange(_bpe.EncodeToIds(text.AsSpan(start)));
        return ids;
    }

    /// <summary>The leftmost special token at or after <paramref name="start"/> (the longest, where several start there).</summary>
    private (int At, SpecialToken? Token) NextSpecial(string text, int start)
    {
        (int At, SpecialToken? Token) next = (text.Length, null);
        foreach (var special in _specials)
        {
            int at = text.IndexOf(special.Text, start, StringComparison.Ordinal);
            if (at >= 0 && (at < next.At || (at == next.At && special.Text.Length > next.Token!.Text.Length))) next = (at, special);
        }
        return next;
    }

    /// <summary>
    /// Model input for one example. Pairs are joined as HF does (B gets no added leading space), and when too long
    /// they are cut as HF's tokenizers cut them ("longest_first"): the longer text alone where that is enough, else
    /// both to half the room, an odd token going to the longer (to the second where they are as long).
    /// </summary>
    public int[] Encode(string first, string? second, int maxLength)
    {
        var a = EncodeText(first);
        var b = second is null ? null : EncodeText(second);
        int room = maxLength - (b is null ? 2 : 4);
        if (room < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), $"MaxSequenceLength {maxLength} leaves no room for text");
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
