using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
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
    /// Fixtures/tokenizer/ids.jsonl, made by HF's own tokenizers library (its make_ids.js): texts with whitespace runs,
    /// contractions, combining marks, letters and emoji outside the BMP, control characters and special tokens written
    /// in them, GLUE cells covering every non-ASCII character GLUE has, and pairs cut to lengths that truncate one or
    /// both texts.
    /// </summary>
    [TestMethod]
    public void MatchesHuggingFaceTokenizersOnHardTextsGlueCellsAndCutPairs()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "ids.jsonl");
        var rows = File.ReadLines(path).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        var differ = new List<string>();
        foreach (var row in rows)
        {
            var text = row.GetProperty("text").GetString()!;
            var expected = row.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();
            var ours = row.TryGetProperty("max", out var max)
                ? Tokenizer.Value.Encode(text, row.GetProperty("pair").GetString(), max.GetInt32())
                : Tokenizer.Value.EncodeText(text).ToArray();
            if (!expected.SequenceEqual(ours)) differ.Add(JsonSerializer.Serialize(text));
        }
        Assert.IsGreaterThan(600, rows.Length);
        Assert.IsGreaterThan(80, rows.Count(r => r.TryGetProperty("max", out _)));
        Assert.IsEmpty(differ, $"{differ.Count} of {rows.Length} rows tokenize differently: {string.Join(", ", differ.Take(5))}");
    }

    /// <summary>A HF tokenizer.json of a checkpoint's vocab.json and merges.txt, its merges as [a, b] pairs (as
    /// tokenizers 0.23 saves them) or as "a b" strings (as older versions did).</summary>
    internal static string TokenizerJson(string checkpoint, bool mergesAsPairs, string preTokenizer =
        """{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}""", string model = "BPE")
    {
        var merges = File.ReadAllLines(Path.Combine(checkpoint, "merges.txt")).Where(l => l.Length > 0 && !l.StartsWith("#version"))
            .Select(l => mergesAsPairs ? (JsonNode)new JsonArray(l.Split(' ').Select(p => (JsonNode)p!).ToArray()) : l);
        return new JsonObject
        {
            ["version"] = "1.0",
            ["pre_tokenizer"] = JsonNode.Parse(preTokenizer),
            ["model"] = new JsonObject
            {
                ["type"] = model,
                ["vocab"] = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "vocab.json"))),
                ["merges"] = new JsonArray(merges.ToArray()),
            },
        }.ToJsonString();
    }

    [TestMethod]
    [DataRow(true, DisplayName = "merges as pairs")]
    [DataRow(false, DisplayName = "merges as strings")]
    public void ACheckpointWithOnlyATokenizerJsonTokenizesTheSame(bool mergesAsPairs)
    {
        var dir = TestFolders.Create("tokenizer-json");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJson(TestData.RobertaMini, mergesAsPairs));
        var fromJson = RobertaTokenizer.FromDirectory(dir);
        // What a model zip keeps of it (vocab.json and merges.txt bytes) rebuilds the same tokenizer.
        var rebuilt = new RobertaTokenizer(fromJson.VocabJson, fromJson.MergesTxt);
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "ids.jsonl");
        foreach (var text in File.ReadLines(path).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("text").GetString()!))
        {
            var expected = Tokenizer.Value.EncodeText(text);
            CollectionAssert.AreEqual(expected.ToArray(), fromJson.EncodeText(text).ToArray(), text);
            CollectionAssert.AreEqual(expected.ToArray(), rebuilt.EncodeText(text).ToArray(), text);
        }
    }

    /// <summary>roberta-mini's tokenizer.json with Fixtures/tokenizer/added_tokens.json (make_ids.js: new tokens, tokens
    /// the vocabulary has, every flag) as its added tokens; ids from <paramref name="setIds"/> where given.</summary>
    internal static byte[] TokenizerJsonWithAddedTokens(string checkpoint, Func<string, int?>? setIds = null)
    {
        var json = JsonNode.Parse(TokenizerJson(checkpoint, mergesAsPairs: true))!;
        var added = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "added_tokens.json")))!.AsArray();
        foreach (var token in added)
            if (setIds?.Invoke(token!["content"]!.GetValue<string>()) is int id) token!["id"] = id;
        json["added_tokens"] = added;
        return System.Text.Encoding.UTF8.GetBytes(json.ToJsonString());
    }

    /// <summary>
    /// Fixtures/tokenizer/added_ids.jsonl, made by HF's tokenizers with those tokens added: single-word tokens next to
    /// letters, digits and marks of other scripts, stripped whitespace (Unicode spaces too), overlapping and nested
    /// tokens, the two passes (a non-normalized token found before a normalized one that contains it), and GLUE cells
    /// with tokens put at random places, alone and in cut pairs. The tokenizer a model zip keeps (vocab, merges, added
    /// tokens) and the tokenizer.json a merged checkpoint gets tokenize them the same.
    /// </summary>
    [TestMethod]
    public void AddedTokensAreFoundAsHuggingFaceTokenizersFindThem()
    {
        var tokenizer = RobertaTokenizer.FromTokenizerJson(TokenizerJsonWithAddedTokens(TestData.RobertaMini), "added/tokenizer.json");
        var fromZip = new RobertaTokenizer(tokenizer.VocabJson, tokenizer.MergesTxt, "zip",
            RobertaTokenizer.ReadAddedTokens(tokenizer.AddedTokensJson(), "zip"));
        var fromMerged = RobertaTokenizer.FromTokenizerJson(tokenizer.ToTokenizerJson(), "merged/tokenizer.json");
        var rows = File.ReadLines(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "added_ids.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        foreach (var (name, tok) in new[] { ("tokenizer.json", tokenizer), ("zip", fromZip), ("merged", fromMerged) })
        {
            var differ = new List<string>();
            foreach (var row in rows)
            {
                var text = row.GetProperty("text").GetString()!;
                var expected = row.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();
                var ours = row.TryGetProperty("max", out var max)
                    ? tok.Encode(text, row.GetProperty("pair").GetString(), max.GetInt32()) : tok.EncodeText(text).ToArray();
                if (!expected.SequenceEqual(ours)) differ.Add(JsonSerializer.Serialize(text));
            }
            Assert.IsEmpty(differ, $"{name}: {differ.Count} of {rows.Length} rows tokenize differently: {string.Join(", ", differ.Take(5))}");
        }
        Assert.IsGreaterThan(250, rows.Length);
        Assert.AreEqual(50273, tokenizer.VocabSize, "ids up to the last added token's");
    }

    [TestMethod]
    public void AddedTokensTakeTheIdsHuggingFaceGivesThemNotTheFilesIds()
    {
        // As tokenizers does on loading: a token of the vocabulary keeps its vocabulary id; new ones are numbered on
        // from the vocabulary in the order listed (the fixture's [URL] is the first new one: 50265).
        var tokenizer = RobertaTokenizer.FromTokenizerJson(TokenizerJsonWithAddedTokens(TestData.RobertaMini,
            content => content switch { "world" => 999, "[URL]" => 60000, _ => null }), "x/tokenizer.json");
        CollectionAssert.AreEqual(new[] { 42891, 1437, 8331, 1437, 50265 }, tokenizer.EncodeText("hello world [URL]").ToArray());
    }

    [TestMethod]
    public void AddedTokensListedWithoutATokenizerJsonAreRefused()
    {
        var dir = TestFolders.Create("slow-tokenizer");
        foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(TestData.RobertaMini, f), Path.Combine(dir, f));
        // RoBERTa's own special tokens, as a slow tokenizer's save lists them: read as usual.
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            """{"added_tokens_decoder": {"0": {"content": "<s>", "special": true}, "50264": {"content": "<mask>", "lstrip": true, "special": true}}}""");
        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), """{"<mask>": 50264}""");
        CollectionAssert.AreEqual(new[] { 0, 31414, 2 }, RobertaTokenizer.FromDirectory(dir).Encode("Hello", null, 8));

        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), """{"<mask>": 50264, "[URL]": 50265}""");
        var e = Assert.ThrowsExactly<InvalidDataException>(() => RobertaTokenizer.FromDirectory(dir));
        StringAssert.Contains(e.Message, dir);
        StringAssert.Contains(e.Message, "([URL])");
        StringAssert.Contains(e.Message, "tokenizer.json");

        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"added_tokens_decoder": {"50265": {"content": "<new>", "special": true}}}""");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => RobertaTokenizer.FromDirectory(dir)).Message, "(<new>)");

        // With a tokenizer.json, that file says it all.
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJson(TestData.RobertaMini, mergesAsPairs: true));
        CollectionAssert.AreEqual(new[] { 0, 31414, 2 }, RobertaTokenizer.FromDirectory(dir).Encode("Hello", null, 8));
    }

    [TestMethod]
    public void ATokenizerJsonThatIsNotRobertasIsRefusedByName()
    {
        void Refused(string json, string why)
        {
            var e = Assert.ThrowsExactly<InvalidDataException>(() => RobertaTokenizer.FromTokenizerJson(System.Text.Encoding.UTF8.GetBytes(json), "x/tokenizer.json"));
            StringAssert.Contains(e.Message, "x/tokenizer.json");
            StringAssert.Contains(e.Message, why);
        }
        Refused(TokenizerJson(TestData.RobertaMini, true, model: "WordPiece"), "not a BPE");
        Refused(TokenizerJson(TestData.RobertaMini, true, preTokenizer: """{"type":"Metaspace"}"""), "not RoBERTa's");
        Refused(TokenizerJson(TestData.RobertaMini, true, preTokenizer: """{"type":"ByteLevel","add_prefix_space":true}"""), "prefix space");
        Refused("{", "not valid JSON");
        string WithPostProcessor(string post)
        {
            var json = JsonNode.Parse(TokenizerJson(TestData.RobertaMini, true))!;
            json["post_processor"] = JsonNode.Parse(post);
            return json.ToJsonString();
        }
        Refused(WithPostProcessor("""{"type":"TemplateProcessing","single":[]}"""), "post-processor is TemplateProcessing");
        Refused(WithPostProcessor("null"), "post-processor is Null");
        Refused(WithPostProcessor("""{"type":"RobertaProcessing","sep":["</s>",2],"cls":["</s>",2]}"""), "not <s> (0) and </s> (2)");
        var roberta = WithPostProcessor("""{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0],"trim_offsets":true,"add_prefix_space":false}""");
        CollectionAssert.AreEqual(new[] { 0, 31414, 2 }, RobertaTokenizer.FromTokenizerJson(System.Text.Encoding.UTF8.GetBytes(roberta), "x").Encode("Hello", null, 8));
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
        // Room for 8 text tokens: cutting the longer first text to 5 is enough.
        var ids = tok.Encode("one two three four five six seven eight nine ten", "alpha beta gamma", 12);
        Assert.HasCount(12, ids);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(a.Take(5)).Append(2).Append(2).Concat(b).Append(2).ToArray(), ids);

        var single = tok.Encode("one two three four five six seven eight nine ten", null, 6);
        CollectionAssert.AreEqual(new[] { 0 }.Concat(a.Take(4)).Append(2).ToArray(), single);
    }

    /// <summary>A text longer than the cut is read only up to the word that reaches it (as tokenizers 0.23 reads it),
    /// which must give exactly the whole text's ids cut: documents of GLUE sentences with added tokens, CJK, emoji and
    /// words of 1,500 letters in them, alone and beside a short second text, cut to 16, 128 and 512.</summary>
    [TestMethod]
    public void ALongTextCutsToTheIdsOfTheWholeText()
    {
        var tok = Tokenizer.Value;
        var sentences = File.ReadLines(Path.Combine(TestData.RepoRoot, "data", "glue", "SST-2", "train.tsv")).Skip(1)
            .Select(l => l.Split('\t')[0]).Take(2000).ToList();
        string[] extras = [" <mask> ", "</s>", " 漢字仮名交じり文", " 😀🎉🚀", " " + new string('x', 1500), "\n\n  "];
        var rng = new Random(3);
        int documents = 0;
        for (int i = 0; i < 150; i++)
        {
            var text = new StringBuilder();
            int chars = rng.Next(20, i % 3 == 0 ? 12000 : 3000);
            while (text.Length < chars) text.Append(rng.Next(8) == 0 ? extras[rng.Next(extras.Length)] : sentences[rng.Next(sentences.Count)] + " ");
            var whole = tok.EncodeText(text.ToString());
            var second = tok.EncodeText("a short second text");
            foreach (int max in new[] { 16, 128, 512 })
            {
                CollectionAssert.AreEqual(new[] { tok.BosId }.Concat(whole.Take(max - 2)).Append(tok.EosId).ToArray(),
                    tok.Encode(text.ToString(), null, max), $"document {i} ({whole.Count} tokens) cut to {max}");
                if (whole.Count < max) continue;
                documents++;
                // Longest first: the long text gives up what the short one needs.
                int room = max - 4, keep = room - second.Count;
                CollectionAssert.AreEqual(new[] { tok.BosId }.Concat(whole.Take(keep)).Append(tok.EosId).Append(tok.EosId).Concat(second).Append(tok.EosId).ToArray(),
                    tok.Encode(text.ToString(), "a short second text", max), $"document {i} with a second text, cut to {max}");
            }
        }
        Assert.IsGreaterThan(100, documents, "documents longer than the cut");
    }

    [TestMethod]
    public void MissingFilesAreNamed()
    {
        var dir = TestFolders.Create();
        File.Copy(Path.Combine(TestData.RobertaMini, "vocab.json"), Path.Combine(dir, "vocab.json"));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => RobertaTokenizer.FromDirectory(dir));
        StringAssert.Contains(e.Message, "merges.txt");
    }
}
