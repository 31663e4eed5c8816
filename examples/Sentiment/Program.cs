// Sentiment (SST-2) with MSPLoRA in an ML.NET pipeline: train, evaluate on dev, save the zip, load it in a
// fresh MLContext and predict. Usage: dotnet run --project examples/Sentiment -- [--backbone DIR]
//   [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16] [--model PATH]
using MlNetPeft.Examples;

return SentimentExample.Run(ExampleArgs.Parse(args, "sentiment", trainRows: 4000, epochs: 5)) ? 0 : 1;
