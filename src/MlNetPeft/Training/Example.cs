namespace MlNetPeft.Training;

/// <summary>One tokenized training or validation row: model input ids, target (class index or value) and the row's
/// weight in the loss (ML.NET's example weight; 1 without a weight column).</summary>
internal readonly record struct Example(int[] Ids, float Label, long Row, float Weight = 1);
