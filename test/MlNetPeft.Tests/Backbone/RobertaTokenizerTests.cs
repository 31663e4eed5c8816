using System.Text.Json;
using MlNetPeft.Backbone;

namespace MlNetPeft.Tests.Backbone;

/// <summary>Ids against the real roberta-base vocab.json/merges.txt (shipped with models/roberta-mini).</summary>
[TestClass]
public sealed class RobertaTokenizerTests
{
    private static readonly Lazy<RobertaTokenizer> Tokenizer = new(() => RobertaTokenizer.FromDirectory(TestData.RobertaMini));

    [TestMethod]
    public void SingleSentenceGetsSpecialTokens() =>
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 2 }, Tokenizer.Value.Encode("Hello world", null, 128));

    [TestMethod]
    public void MatchesHuggingFaceIds()
    {
        CollectionAssert.AreEqual(new[] { 243, 18, 10, 4613, 6, 1144, 12, 26016, 822, 328 },
            Tokenizer.Value.EncodeText("It's a wonderful, heart-warming film!").ToArray());
        // HF's \s+(?!\S) rule: the extra space becomes its own token.
        CollectionAssert.AreEqual(new[] { 31414, 1437, 232 }, Tokenizer.Value.EncodeText("Hello  world").ToArray());
    }

    /// <summary>
    /// Fixtures/tokenizer/ids.jsonl (made by its make_ids.py with bench/reference.py's GPT-2 BPE): whitespace runs,
    /// contractions, combining marks, letters and emoji outside the BMP, control characters, and GLUE cells covering
    /// every non-ASCII character GLUE has.
    /// </summary>
    [TestMethod]
    public void MatchesTheReferenceBpeOnHardTextsAndGlueCells()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "ids.jsonl");
        var rows = File.ReadLines(path).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        var differ = rows
            .Select(r => (Text: r.GetProperty("text").GetString()!, Ids: r.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray()))
            .Where(r => !r.Ids.SequenceEqual(Tokenizer.Value.EncodeText(r.Text)))
            .Select(r => JsonSerializer.Serialize(r.Text))
            .ToArray();
        Assert.IsGreaterThan(500, rows.Length);
        Assert.IsEmpty(differ, $"{differ.Length} of {rows.Length} texts tokenize differently: {string.Join(", ", differ.Take(5))}");
    }

    [TestMethod]
    public void PairIsJoinedWithDoubleSeparatorAndNoAddedSpace() =>
        // "world" at the start of the second text has no leading space: id 8331, not " world" 232.
        CollectionAssert.AreEqual(new[] { 0, 31414, 2, 2, 8331, 2 }, Tokenizer.Value.Encode("Hello", "world", 128));

    [TestMethod]
    public void TruncatesTheLongerSideFirst()
    {
        var tok = Tokenizer.Value;
        var a = tok.EncodeText("one two three four five six seven eight nine ten");
        var b = tok.EncodeText("alpha beta gamma");
        Assert.AreEqual(10, a.Count);
        Assert.AreEqual(3, b.Count);
        // Room for 8 text tokens: the first (longer) text loses tokens until both fit: 5 + 3.
        var ids = tok.Encode("one two three four five six seven eight nine ten", "alpha beta gamma", 12);
        Assert.HasCount(12, ids);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(a.Take(5)).Append(2).Append(2).Concat(b).Append(2).ToArray(), ids);

        var single = tok.Encode("one two three four five six seven eight nine ten", null, 6);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(a.Take(4)).Append(2).ToArray(), single);
    }

    [TestMethod]
    public void MissingFilesAreNamed()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.Copy(Path.Combine(TestData.RobertaMini, "vocab.json"), Path.Combine(dir, "vocab.json"));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => RobertaTokenizer.FromDirectory(dir));
        StringAssert.Contains(e.Message, "merges.txt");
    }
}
