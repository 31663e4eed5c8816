using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Backbone;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>The input columns a text trainer or transformer reads, checked against a schema.</summary>
internal sealed record TextColumns(DataViewSchema.Column Sentence1, DataViewSchema.Column? Sentence2)
{
    public static TextColumns Bind(DataViewSchema schema, string sentence1, string? sentence2, string what) =>
        new(Text(schema, sentence1, what), sentence2 is null ? null : Text(schema, sentence2, what));

    private static DataViewSchema.Column Text(DataViewSchema schema, string name, string what)
    {
        var column = Find(schema, name, "text", what);
        if (column.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: column '{name}' must be text, but is {column.Type}");
        return column;
    }

    /// <summary>The column <paramref name="name"/>; missing, an error naming it, its role and the columns there are.</summary>
    private static DataViewSchema.Column Find(DataViewSchema schema, string name, string role, string what) =>
        schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: {role} column '{name}' not found (columns: {string.Join(", ", schema.Select(c => c.Name))})");

    /// <summary>The label column, checked for the task: a key type with at least 2 values, Boolean for binary
    /// classification, or Single for regression.</summary>
    public static DataViewSchema.Column Label(DataViewSchema schema, string name, TaskKind task, bool binary, string what)
    {
        var column = Find(schema, name, "label", what);
        if (task == TaskKind.Regression)
        {
            if (column.Type != NumberDataViewType.Single)
                throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: label column '{name}' must be Single (float) for regression, but is {column.Type}");
        }
        else if (binary)
        {
            if (column.Type is not BooleanDataViewType)
                throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: label column '{name}' must be Boolean for binary classification, " +
                    $"but is {column.Type}; for class names or numbers use mlContext.MulticlassClassification.Trainers with MapValueToKey(\"{name}\")");
        }
        else if (column.Type is not KeyDataViewType key)
        {
            var binaryHint = column.Type is BooleanDataViewType ? " (or, for a Boolean label, mlContext.BinaryClassification.Trainers)" : "";
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"{what}: label column '{name}' must be a key type, but is {column.Type}; add mlContext.Transforms.Conversion.MapValueToKey(\"{name}\") before the trainer{binaryHint}");
        }
        else if (key.Count < 2 || key.Count > 100_000)
        {
            throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: label column '{name}' has {key.Count} classes; 2 or more are needed " +
                "(a MapValueToKey fitted on data with fewer than two distinct labels, or with no rows, gives fewer)");
        }
        return column;
    }

    /// <summary>The example weight column: Single, as ML.NET's trainers take it.</summary>
    public static DataViewSchema.Column Weight(DataViewSchema schema, string name, string what)
    {
        var column = Find(schema, name, "example weight", what);
        if (column.Type != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(schema), $"{what}: example weight column '{name}' must be Single (float), but is {column.Type}");
        return column;
    }

    /// <summary>Tokenizes every row; empty text, missing labels, unseen label values and negative or non-finite weights
    /// are errors naming row and column. A Boolean label is class 1 when true.</summary>
    public List<Example> ReadExamples(IDataView data, DataViewSchema.Column label, TaskKind task, RobertaTokenizer tokenizer,
        int maxLength, string what, DataViewSchema.Column? weight = null)
    {
        var active = new List<DataViewSchema.Column> { Sentence1, label };
        if (Sentence2 is { } s2) active.Add(s2);
        if (weight is { } w) active.Add(w);
        var examples = new List<Example>();
        using var cursor = data.GetRowCursor(active);
        var texts = new TextReader(cursor, this, what);
        var getLabel = label.Type is KeyDataViewType ? cursor.GetGetter<uint>(label) : null;
        var getTruth = label.Type is BooleanDataViewType ? cursor.GetGetter<bool>(label) : null;
        var getValue = task == TaskKind.Regression ? cursor.GetGetter<float>(label) : null;
        var getWeight = weight is { } column ? cursor.GetGetter<float>(column) : null;
        uint key = 0;
        float value = 0, rowWeight = 1;
        bool truth = false;
        while (cursor.MoveNext())
        {
            var (first, second) = texts.Read();
            float target;
            if (getLabel is not null)
            {
                getLabel(ref key);
                if (key == 0)
                    throw new InvalidDataException($"{what}, row {cursor.Position}: label column '{label.Name}' is missing (key 0). " +
                        "MapValueToKey gives 0 to empty values and to values it did not see when it was fitted.");
                target = key - 1;
            }
            else if (getTruth is not null)
            {
                getTruth(ref truth);
                target = truth ? 1 : 0;
            }
            else
            {
                getValue!(ref value);
                if (!float.IsFinite(value))
                    throw new InvalidDataException($"{what}, row {cursor.Position}: label column '{label.Name}' is {value}");
                target = value;
            }
            if (getWeight is not null)
            {
                getWeight(ref rowWeight);
                if (!float.IsFinite(rowWeight) || rowWeight < 0)
                    throw new InvalidDataException($"{what}, row {cursor.Position}: example weight column '{weight!.Value.Name}' is {rowWeight}; weights must be finite and not negative");
            }
            examples.Add(new Example(tokenizer.Encode(first, second, maxLength), target, cursor.Position, rowWeight));
        }
        return examples;
    }

    /// <summary>Reads the text columns of the current row and rejects empty text, naming column and row.</summary>
    internal sealed class TextReader
    {
        private readonly DataViewRow _row;
        private readonly TextColumns _columns;
        private readonly string _what;
        private readonly ValueGetter<ReadOnlyMemory<char>> _first;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _second;
        private ReadOnlyMemory<char> _a, _b;

        public TextReader(DataViewRow row, TextColumns columns, string what)
        {
            _row = row;
            _columns = columns;
            _what = what;
            _first = row.GetGetter<ReadOnlyMemory<char>>(row.Schema[columns.Sentence1.Name]);
            _second = columns.Sentence2 is { } s2 ? row.GetGetter<ReadOnlyMemory<char>>(row.Schema[s2.Name]) : null;
        }

        public (string First, string? Second) Read()
        {
            _first(ref _a);
            var first = Check(_a, _columns.Sentence1.Name);
            if (_second is null) return (first, null);
            _second(ref _b);
            return (first, Check(_b, _columns.Sentence2!.Value.Name));
        }

        private string Check(ReadOnlyMemory<char> text, string column)
        {
            if (text.Span.IsWhiteSpace())
                throw new InvalidDataException($"{_what}, row {_row.Position}: text column '{column}' is empty");
            return text.ToString();
        }
    }
}
