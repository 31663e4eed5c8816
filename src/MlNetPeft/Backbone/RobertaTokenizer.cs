using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace MlNetPeft.Backbone;

/// <summary>
/// RoBERTa byte-level BPE (vocab.json + merges.txt) through Microsoft.ML.Tokenizers, with HF's special-token
/// layout: <c>&lt;s&gt; A &lt;/s&gt;</c> or <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>.
/// </summary>
public sealed class RobertaTokenizer
{
    private readonly BpeTokenizer _bpe;

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

    /// <summary>Loads vocab.json and merges.txt from a checkpoint directory.</summary>
    public static RobertaTokenizer FromDirectory(string directory)
    {
        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        foreach (var f in new[] { vocab, merges })
            if (!File.Exists(f)) throw new FileNotFoundException($"tokenizer file not found: {f}", f);
        return new RobertaTokenizer(File.ReadAllBytes(vocab), File.ReadAllBytes(merges), directory);
    }

    public byte[] VocabJson { get; }
    public byte[] MergesTxt { get; }
    public int BosId { get; }
    public int PadId { get; }
    public int EosId { get; }
    public int VocabSize { get; }

    /// <summary>Token ids of a text, without special tokens ("Hello world" → 31414, 232).</summary>
    public IReadOnlyList<int> EncodeText(string text) => _bpe.EncodeToIds(text);

    /// <summary>
    /// Model input for one example. Pairs are joined as HF does (B gets no added leading space), and when
    /// too long the longer side is truncated first, one token at a time (HF "longest_first").
    /// </summary>
    public int[] Encode(string first, string? second, int maxLength)
    {
        var a = EncodeText(first);
        var b = second is null ? null : EncodeText(second);
        int room = maxLength - (b is null ? 2 : 4);
        if (room < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), $"MaxSequenceLength {maxLength} leaves no room for text");
        int keepA = a.Count, keepB = b?.Count ?? 0;
        while (keepA + keepB > room)
        {
            if (keepB > keepA) keepB--; else keepA--;
        }
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
}
