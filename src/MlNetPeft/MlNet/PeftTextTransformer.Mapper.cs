using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

public sealed partial class PeftTextTransformer
{
    /// <summary>Per-row mapper: one forward pass per row, shared by the Score and PredictedLabel getters.</summary>
    private sealed class Mapper : MapperBase
    {
        private readonly PeftTextTransformer _transformer;
        private readonly TextColumns _columns;

        public Mapper(PeftTextTransformer parent, DataViewSchema inputSchema)
            : base(parent.Host.Register(nameof(Mapper)), inputSchema, parent)
        {
            _transformer = parent;
            _columns = TextColumns.Bind(inputSchema, parent._info.Sentence1Column, parent._info.Sentence2Column, "prediction input");
        }

        private bool IsClassification => _transformer._info.Task == TaskKind.Classification;

        public override DataViewSchema.DetachedColumn[] GetOutputColumnsCore()
        {
            var info = _transformer._info;
            uint setId = checked(InputSchema.GetMaxAnnotationKind(out _, AnnotationUtils.Kinds.ScoreColumnSetId) + 1);
            if (info.Binary) return BinaryColumns(info, setId);
            var kind = IsClassification ? AnnotationUtils.Const.ScoreColumnKind.MulticlassClassification : AnnotationUtils.Const.ScoreColumnKind.Regression;

            var score = Annotations(setId, kind, AnnotationUtils.Const.ScoreValueKind.Score);
            if (!IsClassification)
                return [new(info.ScoreColumn, NumberDataViewType.Single, score.ToAnnotations())];

            if (_transformer._labelValues?.TextNames is { } names)
                score.Add(AnnotationUtils.Kinds.SlotNames, new VectorDataViewType(TextDataViewType.Instance, info.Outputs), names);
            var predicted = Annotations(setId, kind, AnnotationUtils.Const.ScoreValueKind.PredictedLabel);
            _transformer._labelValues?.AddTo(predicted);
            return
            [
                new(info.ScoreColumn, new VectorDataViewType(NumberDataViewType.Single, info.Outputs), score.ToAnnotations()),
                new(info.PredictedLabelColumn, new KeyDataViewType(typeof(uint), info.Outputs), predicted.ToAnnotations()),
            ];
        }

        /// <summary>ML.NET's binary classifier columns: Score (log-odds of true), Probability, Boolean PredictedLabel.</summary>
        private static DataViewSchema.DetachedColumn[] BinaryColumns(PeftModelInfo info, uint setId)
        {
            const string kind = AnnotationUtils.Const.ScoreColumnKind.BinaryClassification;
            var probability = Annotations(setId, kind, AnnotationUtils.Const.ScoreValueKind.Probability);
            probability.Add(AnnotationUtils.Kinds.IsNormalized, BooleanDataViewType.Instance, (ref bool v) => v = true);
            return
            [
                new(info.ScoreColumn, NumberDataViewType.Single, Annotations(setId, kind, AnnotationUtils.Const.ScoreValueKind.Score).ToAnnotations()),
                new(info.ProbabilityColumn, NumberDataViewType.Single, probability.ToAnnotations()),
                new(info.PredictedLabelColumn, BooleanDataViewType.Instance, Annotations(setId, kind, AnnotationUtils.Const.ScoreValueKind.PredictedLabel).ToAnnotations()),
            ];
        }

        private static DataViewSchema.Annotations.Builder Annotations(uint setId, string columnKind, string valueKind)
        {
            var builder = new DataViewSchema.Annotations.Builder();
            builder.Add(AnnotationUtils.Kinds.ScoreColumnSetId, AnnotationUtils.ScoreColumnSetIdType, (ref uint v) => v = setId);
            builder.Add(AnnotationUtils.Kinds.ScoreColumnKind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = columnKind.AsMemory());
            builder.Add(AnnotationUtils.Kinds.ScoreValueKind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = valueKind.AsMemory());
            return builder;
        }

        public override Func<int, bool> GetDependenciesCore(Func<int, bool> activeOutput)
        {
            bool any = Enumerable.Range(0, OutputColumns.Value.Length).Any(activeOutput);
            return col => any && (col == _columns.Sentence1.Index || col == _columns.Sentence2?.Index);
        }

        public override void SaveModel(ModelSaveContext ctx) => _transformer.SaveModel(ctx);

        public override Delegate MakeGetter(DataViewRow input, int iinfo, Func<int, bool> activeOutput, out Action disposer) =>
            throw new NotSupportedException("getters are made together by CreateGetters");

        public override Delegate[] CreateGetters(DataViewRow input, Func<int, bool> activeOutput, out Action disposer)
        {
            disposer = () => { };
            var result = new Delegate[OutputColumns.Value.Length];
            if (!Enumerable.Range(0, result.Length).Any(activeOutput)) return result;

            var reader = new TextColumns.TextReader(input, _columns, "prediction input");
            long cachedAt = -1;
            float[] outputs = [];
            float[] Outputs()
            {
                if (cachedAt != input.Position)
                {
                    var (first, second) = reader.Read();
                    outputs = _transformer.Predict([_transformer._tokenizer.Encode(first, second, _transformer._info.MaxSequenceLength)])[0];
                    cachedAt = input.Position;
                }
                return outputs;
            }
            for (int i = 0; i < result.Length; i++)
                if (activeOutput(i)) result[i] = _transformer.OutputGetter(i, Outputs);
            return result;
        }
    }
}
