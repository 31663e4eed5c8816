using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using MlNetPeft.Backbone;

namespace MlNetPeft.Tests.Backbone;

/// <summary>The heap-ordered merge of long pre-tokens gives Microsoft.ML.Tokenizers' ids (which equal HF's, see
/// RobertaTokenizerTests), word for word and through the tokenizer.</summary>
[TestClass]
public sealed class LongWordBpeTests
{
    private static Dictionary<string, int> Vocab() =>
        JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllBytes(Path.Combine(TestData.RobertaMini, "vocab.json")))!;

    private static List<string> Merges() =>
        File.ReadLines(Path.Combine(TestData.RobertaMini, "merges.txt")).Where(l => l.Length > 0 && !l.StartsWith("#version")).ToList();

    /// <summary>The library's BPE, set up as RobertaTokenizer sets it up, with no long-word path.</summary>
    private static BpeTokenizer Library() =>
        BpeTokenizer.Create(new BpeOptions(Vocab()) { Merges = Merges(), ByteLevel = true, PreTokenizer = RobertaPreTokenizer.Instance });

    /// <summary>Pre-tokens of every kind: GLUE cells and random runs of letters (Latin, accented, Greek, CJK), digits,
    /// punctuation and emoji, with and without the leading space RoBERTa's pre-tokenizer keeps.</summary>
    private static IEnumerable<string> Words()
    {
        var glue = File.ReadLines(Path.Combine(TestData.RepoRoot, "data", "glue", "SST-2", "train.tsv")).Skip(1).Take(400)
            .Concat(File.ReadLines(Path.Combine(TestData.RepoRoot, "data", "glue", "STS-B", "dev.tsv")).Skip(1).Take(200));
        foreach (var line in glue)
            foreach (var (offset, length) in RobertaPreTokenizer.Instance.PreTokenize(line))
                yield return line.Substring(offset, length);
        var rng = new Random(7);
        string[] alphabets = ["abcdefghijklmnopqrstuvwxyz", "aab", "ab", "a", "éèàçüößñ", "αβγδεζηθ", "漢字仮名交じり文", "0123456789", "7",
            "!?.,;:-_()[]{}#$%&*+=/\\|~^", "😀🎉🚀👍❤"];
        for (int i = 0; i < 300; i++)
        {
            var alphabet = alphabets[i % alphabets.Length];
            int length = rng.Next(1, i < 200 ? 60 : 1500);
            var word = new StringBuilder(rng.Next(2) == 0 ? " " : "");
            var elements = System.Globalization.StringInfo.GetTextElementEnumerator(alphabet);
            var pieces = new List<string>();
            while (elements.MoveNext()) pieces.Add((string)elements.Current);
            for (int k = 0; k < length; k++) word.Append(pieces[rng.Next(pieces.Count)]);
            yield return word.ToString();
        }
    }

    [TestMethod]
    public void MergesEachWordAsTheLibraryDoes()
    {
        var bpe = new LongWordBpe(Vocab(), Merges());
        var library = Library();
        int words = 0;
        foreach (var word in Words())
        {
            // Compared word by word: a random run can hold more than one pre-token (a space inside, say).
            foreach (var (offset, length) in RobertaPreTokenizer.Instance.PreTokenize(word))
            {
                var piece = word.Substring(offset, length);
                CollectionAssert.AreEqual(library.EncodeToIds(piece).ToArray(), bpe.Encode(piece).ToArray(), $"'{piece}'");
                words++;
            }
        }
        Assert.IsGreaterThan(3000, words);
    }

    [TestMethod]
    public void ATokenizerGivesTheLibrarysIdsForTextsWithLongWords()
    {
        var tokenizer = RobertaTokenizer.FromDirectory(TestData.RobertaMini);
        var library = Library();
        var rng = new Random(3);
        string Run(string alphabet, int n) => new(Enumerable.Range(0, n).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
        string[] texts =
        [
            "A review that ends in " + new string('a', 3000) + " and then goes on.",
            Run("abcdefghijklmnopqrstuvwxyz", 5000) + " " + Run("0123456789", 2500) + " the end",
            "<s>" + Run("éèàçüößñ", 1200) + "</s> mixed with added tokens " + Run("ab", 4000),
        ];
        foreach (var text in texts)
        {
            var expected = new List<int>();
            foreach (var (start, end, id) in SplitOnSpecials(text))
                if (id is int token) expected.Add(token); else expected.AddRange(library.EncodeToIds(text[start..end]));
            CollectionAssert.AreEqual(expected, tokenizer.EncodeText(text).ToList(), text[..40]);
        }
        // A pair of long words is cut as before: the counts that decide the cut come from the same ids.
        var pair = tokenizer.Encode(texts[0], texts[1], 64);
        Assert.HasCount(64, pair);
        CollectionAssert.AreEqual(tokenizer.EncodeText(texts[0]).Take(30).ToList(), pair.Skip(1).Take(30).ToList());
    }

    /// <summary>RoBERTa's special tokens written in a text, as the tokenizer finds them (the only added tokens here).</summary>
    private static IEnumerable<(int Start, int End, int? Id)> SplitOnSpecials(string text)
    {
        int at = 0;
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text, "<s>|</s>"))
        {
            yield return (at, m.Index, null);
            yield return (m.Index, m.Index + m.Length, m.Value == "<s>" ? 0 : 2);
            at = m.Index + m.Length;
        }
        yield return (at, text.Length, null);
    }
}
