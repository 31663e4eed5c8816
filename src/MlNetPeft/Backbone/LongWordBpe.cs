using System.Text;

namespace MlNetPeft.Backbone;

/// <summary>
/// Byte-level BPE of one pre-token as HF's tokenizers merge a word (word.rs, merge_all): adjacent pairs wait in a
/// min-heap ordered by merge rank, then position; each merge pushes the two pairs it forms with its neighbours, and an
/// entry whose pair has changed since it was pushed is skipped. That is O(n log n) in the word's length, where
/// Microsoft.ML.Tokenizers' merge loop grows about as n^1.5 (0.6 s for a word of 80,000 letters, where a run of letters
/// or digits without a space is one pre-token). <see cref="RobertaTokenizer"/> uses this for pre-tokens longer than
/// <see cref="MinLength"/> characters only, so ordinary text keeps the library's path.
/// </summary>
internal sealed class LongWordBpe
{
    /// <summary>Pre-tokens longer than this are merged here.</summary>
    public const int MinLength = 1000;

    private readonly Dictionary<(int Left, int Right), (int Rank, int Id)> _merges = new();
    private readonly int[] _byteIds = new int[256];

    /// <param name="vocab">token → id, as vocab.json</param>
    /// <param name="merges">"a b" lines of merges.txt in rank order</param>
    public LongWordBpe(IReadOnlyDictionary<string, int> vocab, IEnumerable<string> merges)
    {
        var chars = ByteLevelChars();
        for (int b = 0; b < 256; b++)
            _byteIds[b] = vocab.TryGetValue(chars[b].ToString(), out int id) ? id
                : throw new InvalidDataException($"vocab.json has no token for byte {b} ('{chars[b]}'), so it is not a byte-level vocabulary");
        int rank = 0;
        foreach (var line in merges)
        {
            int space = line.IndexOf(' ');
            string left = line[..space], right = line[(space + 1)..];
            // As HF builds its merge map: a later duplicate replaces an earlier one.
            if (vocab.TryGetValue(left, out int l) && vocab.TryGetValue(right, out int r) && vocab.TryGetValue(left + right, out int merged))
                _merges[(l, r)] = (rank, merged);
            rank++;
        }
    }

    /// <summary>The token ids of one pre-token.</summary>
    public List<int> Encode(ReadOnlySpan<char> word)
    {
        var bytes = Encoding.UTF8.GetBytes(word.ToArray());
        int n = bytes.Length;
        var id = new int[n];
        var prev = new int[n];
        var next = new int[n];
        var removed = new bool[n];
        for (int i = 0; i < n; i++)
        {
            id[i] = _byteIds[bytes[i]];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        // Entries (position, merged id), by rank then position: HF's Merge ordering.
        var queue = new PriorityQueue<(int Pos, int Id), long>(n);
        void Push(int pos, int right)
        {
            if (_merges.TryGetValue((id[pos], id[right]), out var m)) queue.Enqueue((pos, m.Id), ((long)m.Rank << 32) | (uint)pos);
        }
        for (int i = 0; i + 1 < n; i++) Push(i, i + 1);
        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (removed[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue((id[pos], id[right]), out var pair) || pair.Id != top.Id) continue; // stale
            id[pos] = top.Id;
            removed[right] = true;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            if (prev[pos] >= 0) Push(prev[pos], pos);
            if (next[pos] >= 0) Push(pos, next[pos]);
        }
        var ids = new List<int>();
        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) ids.Add(id[i]);
        return ids;
    }

    /// <summary>GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for the characters from 256 on.</summary>
    private static char[] ByteLevelChars()
    {
        var chars = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
            chars[b] = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ' ? (char)b : (char)(256 + extra++);
        return chars;
    }
}
