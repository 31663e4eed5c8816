// Paraphrase detection (GLUE MRPC) with MSPLoRA on sentence pairs, a binary classifier: train, evaluate on dev, save, reload, predict.
// Usage: dotnet run --project examples/Paraphrase -- [--backbone DIR] [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16]; --help lists them all.
using MlNetPeft.Examples;

return ExampleArgs.Run(args, "paraphrase", trainRows: 2000, epochs: 3, ParaphraseExample.Run);
