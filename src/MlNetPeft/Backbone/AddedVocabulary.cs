using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MlNetPeft.Backbone;

/// <summary>A token HF's tokenizers find in the text before BPE (tokenizer.json's "added_tokens"): RoBERTa's five
/// special tokens and any a user added. <paramref name="LeftStrip"/>/<paramref name="RightStrip"/>: it also takes the
/// whitespace before/after it; <paramref name="SingleWord"/>: it only counts where no word character touches it;
/// <paramref name="Normalized"/>: it is looked for in a second pass (RoBERTa has no normalizer, so only the order
/// of the two passes differs).</summary>
public sealed record AddedToken(string Content, int Id, bool SingleWord = false, bool LeftStrip = false,
    bool RightStrip = false, bool Normalized = true, bool Special = false);

/// <summary>
/// Splits a text on its added tokens as HF's tokenizers do (added_vocabulary.rs): first on the tokens that are not
/// normalized, then, inside what is left, on those that are; each pass takes the leftmost, longest match, skips a
/// single-word token that touches a word, and gives stripped whitespace to the token.
/// </summary>
internal sealed class AddedVocabulary
{
    private static readonly string[] RobertaSpecials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"];

    private readonly AddedToken[] _firstPass, _secondPass;
    private readonly SearchValues<char> _firstChars;

    /// <param name="tokens">with their ids and none empty (<see cref="Assign"/>)</param>
    public AddedVocabulary(IReadOnlyList<AddedToken> tokens)
    {
        Tokens = tokens;
        _firstPass = tokens.Where(t => !t.Normalized).ToArray();
        _secondPass = tokens.Where(t => t.Normalized).ToArray();
        _firstChars = SearchValues.Create(tokens.Select(t => t.Content[0]).Distinct().ToArray());
    }

    public IReadOnlyList<AddedToken> Tokens { get; }

    public static bool IsRobertaSpecial(string content) => RobertaSpecials.Contains(content);

    /// <summary>
    /// <paramref name="listed"/> with the ids HF's tokenizers give them, whatever ids a file wrote: a token the
    /// vocabulary has keeps its id there, a new one takes the next id after the vocabulary and the tokens before it;
    /// a token listed again takes the later flags. RoBERTa's special tokens, as transformers sets them up (&lt;mask&gt;
    /// takes the whitespace before it), are added where the list lacks them.
    /// </summary>
    public static List<AddedToken> Assign(IReadOnlyDictionary<string, int> vocab, IReadOnlyList<AddedToken> listed)
    {
        var tokens = new List<AddedToken>();
        int next = vocab.Count;
        foreach (var token in listed.Where(t => t.Content.Length > 0))
        {
            int known = tokens.FindIndex(t => t.Content == token.Content);
            if (known >= 0) { tokens[known] = token with { Id = tokens[known].Id }; continue; }
            int id = vocab.TryGetValue(token.Content, out var inVocab) ? inVocab : next;
            next = Math.Max(next, id + 1);
            tokens.Add(token with { Id = id });
        }
        foreach (var special in RobertaSpecials.Where(s => vocab.ContainsKey(s) && tokens.All(t => t.Content != s)))
            tokens.Add(new AddedToken(special, vocab[special], LeftStrip: special == "<mask>", Normalized: special != "<mask>", Special: true));
        return tokens;
    }

    /// <summary>Whether any added token may occur in <paramref name="text"/> (most texts: none can).</summary>
    public bool MayOccurIn(ReadOnlySpan<char> text) => text.ContainsAny(_firstChars);

    /// <summary>The text as consecutive pieces: an added token's id with the text it covers, or text for BPE (Id null).</summary>
    public List<(int Start, int End, int? Id)> Split(string text)
    {
        var pieces = new List<(int, int, int?)>();
        foreach (var (start, end, id) in Find(text, 0, text.Length, _firstPass))
            if (id is not null) pieces.Add((start, end, id));
            else pieces.AddRange(Find(text, start, end, _secondPass));
        return pieces;
    }

    /// <summary>One pass of HF's find_matches over text[from..to].</summary>
    private static List<(int Start, int End, int? Id)> Find(string text, int from, int to, AddedToken[] tokens)
    {
        var pieces = new List<(int, int, int?)>();
        var nextAt = new int[tokens.Length];
        Array.Fill(nextAt, -2);
        int done = from, searchFrom = from;
        while (LeftmostLongest(text, searchFrom, to, tokens, nextAt) is { } match)
        {
            var token = tokens[match];
            int start = nextAt[match], stop = start + token.Content.Length;
            searchFrom = stop; // as aho-corasick's iterator: after the match, whether it is kept or not
            if (token.SingleWord && ((start > from && IsWordBefore(text, from, start)) || (stop < to && IsWordAt(text, stop, to))))
                continue;
            if (token.LeftStrip)
            {
                int stripped = start;
                while (stripped > from && char.IsWhiteSpace(text[stripped - 1])) stripped--;
                start = Math.Max(stripped, done);
            }
            if (token.RightStrip)
                while (stop < to && char.IsWhiteSpace(text[stop])) stop++;
            if (done < start) pieces.Add((done, start, null));
            pieces.Add((start, stop, token.Id));
            done = stop;
        }
        if (done != to || pieces.Count == 0) pieces.Add((done, to, null));
        return pieces;
    }

    /// <summary>Index into <paramref name="tokens"/> of the match that starts first at or after
    /// <paramref name="from"/> (the longest of those starting there), or null; <paramref name="nextAt"/> caches each
    /// token's next occurrence (-1: none left, -2: not looked for yet).</summary>
    private static int? LeftmostLongest(string text, int from, int to, AddedToken[] tokens, int[] nextAt)
    {
        int? best = null;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (nextAt[i] == -1) continue;
            if (nextAt[i] < from)
            {
                nextAt[i] = text.IndexOf(tokens[i].Content, from, to - from, StringComparison.Ordinal);
                if (nextAt[i] < 0) { nextAt[i] = -1; continue; }
            }
            if (best is not int b || nextAt[i] < nextAt[b] || (nextAt[i] == nextAt[b] && tokens[i].Content.Length > tokens[b].Content.Length))
                best = i;
        }
        return best;
    }

    private static bool IsWordBefore(string text, int from, int at) =>
        Rune.DecodeLastFromUtf16(text.AsSpan(from, at - from), out var rune, out _) == OperationStatus.Done && IsWord(rune);

    private static bool IsWordAt(string text, int at, int to) =>
        Rune.DecodeFromUtf16(text.AsSpan(at, to - at), out var rune, out _) == OperationStatus.Done && IsWord(rune);

    /// <summary>Rust regex's Unicode \w: alphabetic (letters, letter numbers, the circled letters), marks, decimal
    /// digits, connector punctuation and the zero-width joiners.</summary>
    private static bool IsWord(Rune rune) => Rune.GetUnicodeCategory(rune) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
            or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation => true,
        _ => rune.Value is 0x200C or 0x200D or (>= 0x24B6 and <= 0x24E9),
    };

    /// <summary>tokenizer.json's "added_tokens" entries (flags left out take AddedToken's defaults in HF's
    /// tokenizers: not normalized where special).</summary>
    public static List<AddedToken> Read(JsonElement addedTokens, string source)
    {
        if (addedTokens.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{source}: added_tokens is not a list");
        var tokens = new List<AddedToken>();
        foreach (var entry in addedTokens.EnumerateArray())
        {
            bool Flag(string name, bool otherwise) => entry.TryGetProperty(name, out var v)
                ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new InvalidDataException($"{source}: added token {entry}: {name} is not true or false")
                : otherwise;
            if (entry.ValueKind != JsonValueKind.Object
                || !entry.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String
                || !entry.TryGetProperty("id", out var id) || !id.TryGetInt32(out int value) || value < 0)
                throw new InvalidDataException($"{source}: added token {entry} lacks a content string or a non-negative id");
            bool special = Flag("special", false);
            tokens.Add(new AddedToken(content.GetString()!, value, Flag("single_word", false), Flag("lstrip", false),
                Flag("rstrip", false), Flag("normalized", !special), special));
        }
        return tokens;
    }

    /// <summary>The tokens as tokenizer.json's "added_tokens" lists them (by id).</summary>
    public JsonArray ToJson() => new(Tokens.OrderBy(t => t.Id).Select(t => (JsonNode)new JsonObject
    {
        ["id"] = t.Id,
        ["content"] = t.Content,
        ["single_word"] = t.SingleWord,
        ["lstrip"] = t.LeftStrip,
        ["rstrip"] = t.RightStrip,
        ["normalized"] = t.Normalized,
        ["special"] = t.Special,
    }).ToArray());
}
