// MlNetPeft benchmarks. Usage:
//   quality --task sst2|mrpc|cola|qnli|rte|stsb|all --method lora,msplora,lorasquared,adalora,full
//           [--backbone DIR] [--seeds N] [--epochs E] [--max-train-rows K] [--lr X] [--batch B] [--max-len L]
//           [--reference [--reference-seeds N]] [--out DIR]
using MlNetPeft.Bench;

try
{
    var args0 = BenchArgs.Parse(args);
    return args0.Command switch
    {
        "quality" => QualityBenchmark.Run(args0),
        _ => throw new ArgumentException($"unknown command '{args0.Command}' (quality)"),
    };
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
