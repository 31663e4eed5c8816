// Sentiment (SST-2) with MSPLoRA in an ML.NET pipeline: train, evaluate on dev, save the zip, load it in a
// fresh MLContext and predict. Usage: dotnet run --project examples/Sentiment -- [--backbone DIR]
//   [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16] [--model PATH]; --help lists them all.
using MlNetPeft.Examples;

return ExampleArgs.Run(args, "sentiment", trainRows: 4000, epochs: 5, SentimentExample.Run);
