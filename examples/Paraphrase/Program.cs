// Paraphrase detection (GLUE MRPC) with MSPLoRA on sentence pairs, a binary classifier: train, evaluate on dev, save, reload, predict.
// Usage: dotnet run --project examples/Paraphrase -- [--backbone DIR] [--max-train-rows N] [--epochs E] [--learning-rate LR] [--precision fp32|bf16]
using MlNetPeft.Examples;

return ParaphraseExample.Run(ExampleArgs.Parse(args, "paraphrase", trainRows: 2000, epochs: 3)) ? 0 : 1;
