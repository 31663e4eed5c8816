using System.Diagnostics;
using System.Text;
using MlNetPeft.Backbone;

namespace MlNetPeft.Bench;

/// <summary>
/// How long the tokenizer takes to make one model input from a document (SST-2 sentences joined to a length), cut to
/// each --max-len, against encoding the whole document first (what a cut cost before the tokenizer stopped at the
/// word that reaches it). One thread, milliseconds per document; on a GPU this is what feeds each row.
/// </summary>
internal static class TokenizerBenchmark
{
    public static int Run(BenchArgs a)
    {
        var tokenizer = RobertaTokenizer.FromDirectory(a.Text("backbone", Path.Combine(BenchArgs.RepositoryRoot(), "models", "roberta-mini")));
        int rows = a.Int("rows", 300);
        var maxLengths = a.List("max-len", "128,512").Select(int.Parse).ToArray();
        var sentences = SentencePredictor.DevSentences(a);
        var rng = new Random(1);
        var sets = a.List("chars", "300,1300,5000,20000").Select(int.Parse).Select(chars => (chars, Documents: Enumerable.Range(0, rows).Select(_ =>
        {
            var text = new StringBuilder();
            while (text.Length < chars) text.Append(sentences[rng.Next(sentences.Count)]).Append(' ');
            return text.ToString();
        }).ToList())).ToList();
        var ways = new List<(string Name, Action<string> Encode)> { ("whole text", d => tokenizer.EncodeText(d)) };
        ways.AddRange(maxLengths.Select(max => ($"cut to {max}", (Action<string>)(d => tokenizer.Encode(d, null, max)))));
        // One untimed pass of everything first: the JIT's optimised code and the BPE's word cache, as a long run has them.
        foreach (var (_, documents) in sets)
            foreach (var (_, encode) in ways) documents.ForEach(encode);
        foreach (var (chars, documents) in sets)
        {
            // The best of three passes: this machine is shared.
            var times = ways.Select(w => Enumerable.Range(0, 3).Min(_ =>
            {
                var clock = Stopwatch.StartNew();
                documents.ForEach(w.Encode);
                return clock.Elapsed.TotalMilliseconds / documents.Count;
            })).ToList();
            Console.WriteLine($"{chars,6} characters: " + string.Join(", ", ways.Select((w, i) =>
                $"{w.Name} {times[i]:F3} ms ({1000 / times[i]:F0}/s{(i > 0 ? $", ×{times[0] / times[i]:F1}" : "")})")));
        }
        return 0;
    }
}
