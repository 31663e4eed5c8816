namespace MlNetPeft.Training;

/// <summary>One tokenized training or validation row: model input ids and target (class index or value).</summary>
internal readonly record struct Example(int[] Ids, float Label, long Row);
