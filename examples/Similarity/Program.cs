// Semantic similarity (GLUE STS-B) as regression with MSPLoRA: train, evaluate on dev, save, reload, predict.
// Usage: dotnet run --project examples/Similarity -- [--backbone DIR] [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16]; --help lists them all.
using MlNetPeft.Examples;

return ExampleArgs.Run(args, "similarity", trainRows: 2000, epochs: 3, SimilarityExample.Run);
