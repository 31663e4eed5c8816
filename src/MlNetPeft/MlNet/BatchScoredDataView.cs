using Microsoft.ML;
using Microsoft.ML.Data;

namespace MlNetPeft.MlNet;

/// <summary>
/// What <see cref="PeftTextTransformer.Transform"/> returns: the row-by-row mapped view (schema, pass-through
/// columns), except that a sequential cursor which reads Score or PredictedLabel scores its rows in batches: a second
/// cursor over the input reads the text of the next rows ahead, they are scored together, and the results are served
/// in order. One forward pass per batch instead of per row: on a GPU that is most of the difference between a
/// training-speed and a single-row inference rate. Shuffled cursors keep the row-by-row path.
/// </summary>
internal sealed class BatchScoredDataView : IDataView
{
    /// <summary>Rows read ahead and scored together (batched by length inside, see BatchScorer).</summary>
    internal const int ReadAhead = 256;

    private readonly PeftTextTransformer _transformer;
    private readonly IDataView _input;
    private readonly IDataView _mapped;
    private readonly TextColumns _columns;
    private readonly int[] _outputIndices;

    public BatchScoredDataView(PeftTextTransformer transformer, IDataView input, IDataView mapped)
    {
        _transformer = transformer;
        _input = input;
        _mapped = mapped;
        var info = transformer.Info;
        _columns = TextColumns.Bind(input.Schema, info.Sentence1Column, info.Sentence2Column, "prediction input");
        _outputIndices = info.OutputColumnNames.Select(name => mapped.Schema[name].Index).ToArray();
    }

    public DataViewSchema Schema => _mapped.Schema;
    public bool CanShuffle => _mapped.CanShuffle;
    public long? GetRowCount() => _mapped.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        if (rand is not null || !needed.Any(c => _outputIndices.Contains(c.Index))) return _mapped.GetRowCursor(needed, rand);
        var main = _mapped.GetRowCursor(needed.Where(c => !_outputIndices.Contains(c.Index)));
        var textColumns = new[] { _columns.Sentence1.Index, _columns.Sentence2?.Index }.OfType<int>().Select(i => _input.Schema[i]);
        return new Cursor(this, main, _input.GetRowCursor(textColumns), needed.Select(c => c.Index).ToHashSet());
    }

    /// <summary>One cursor: batching needs the rows in order.</summary>
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly BatchScoredDataView _view;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor _ahead;
        private readonly TextColumns.TextReader _reader;
        private readonly HashSet<int> _active;
        private float[][] _outputs = [];
        private int _index = -1;

        public Cursor(BatchScoredDataView view, DataViewRowCursor main, DataViewRowCursor ahead, HashSet<int> active)
        {
            _view = view;
            _main = main;
            _ahead = ahead;
            _active = active;
            _reader = new TextColumns.TextReader(ahead, view._columns, "prediction input");
        }

        public override DataViewSchema Schema => _view.Schema;
        public override long Position => _main.Position;
        public override long Batch => _main.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            _view._outputIndices.Contains(column.Index) ? _active.Contains(column.Index) : _main.IsColumnActive(column);

        public override bool MoveNext()
        {
            if (!_main.MoveNext()) return false;
            if (++_index >= _outputs.Length) ScoreAhead();
            return true;
        }

        private void ScoreAhead()
        {
            var transformer = _view._transformer;
            var rows = new List<int[]>();
            while (rows.Count < ReadAhead && _ahead.MoveNext())
            {
                var (first, second) = _reader.Read();
                rows.Add(transformer.Tokenizer.Encode(first, second, transformer.Info.MaxSequenceLength));
            }
            if (rows.Count == 0)
                throw new InvalidOperationException($"prediction input, row {_main.Position}: a second cursor over the input ended early (the input must give the same rows on every cursor)");
            _outputs = transformer.Predict(rows);
            _index = 0;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int output = Array.IndexOf(_view._outputIndices, column.Index);
            if (output < 0) return _main.GetGetter<TValue>(column);
            if (!_active.Contains(column.Index)) throw new InvalidOperationException($"column '{column.Name}' is not active");
            return (ValueGetter<TValue>)_view._transformer.OutputGetter(output, () => _outputs[_index]);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _main.Dispose();
                _ahead.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
