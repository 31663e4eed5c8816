// Semantic similarity (GLUE STS-B) as regression with MSPLoRA: train, evaluate on dev, save, reload, predict.
// Usage: dotnet run --project examples/Similarity -- [--backbone DIR] [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16]
using MlNetPeft.Examples;

return SimilarityExample.Run(ExampleArgs.Parse(args, "similarity", trainRows: 2000, epochs: 3)) ? 0 : 1;
