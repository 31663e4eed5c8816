namespace MlNetPeft.Bench;

/// <summary>The benchmark program's commands and the options each reads: anything else is refused before it runs, so
/// a misspelt option cannot leave a default in force for a long run (or a GPU session's few minutes).</summary>
internal static class BenchCommands
{
    private static readonly Dictionary<string, (Func<BenchArgs, int> Run, string[] Options)> All = new()
    {
        ["quality"] = (QualityBenchmark.Run, ["task", "method", "backbone", "data", "seeds", "first-seed", "epochs", "max-train-rows", "lr", "batch",
            "max-len", "accumulate", "checkpoint", "precision", "reference", "reference-seeds", "reference-script", "targets", "out"]),
        ["speed"] = (SpeedBenchmark.Run, ["shape", "method", "batch", "seq", "steps", "device", "precision", "accumulate", "checkpoint",
            "threads", "reference", "reference-script", "warm-up", "phases", "targets", "adapter-dropout", "out"]),
        ["first-steps"] = (FirstStepsBenchmark.Run, ["shape", "method", "batch", "seq", "steps", "device", "precision"]),
        ["stacking"] = (StackingComparison.Run, ["shape", "method", "batch", "seq", "steps", "threads", "device"]),
        ["resume"] = (ResumeCheck.Run, ["shape", "method", "batch", "seq", "rows", "device", "precision"]),
        ["latency"] = (LatencyBenchmark.Run, ["model", "precision", "rows", "warm-up", "parallel", "threads", "data", "transform", "passes", "share"]),
        ["score"] = (LatencyBenchmark.Score, ["model", "out", "rows", "data"]),
        ["zip-memory"] = (ZipMemoryBenchmark.Run, ["shape", "backbone", "embed", "full", "loads", "rows", "share", "data", "work"]),
        ["tokenize"] = (TokenizerBenchmark.Run, ["backbone", "chars", "max-len", "rows", "data"]),
        ["parity"] = (ParityCheck.Run, ["fixture", "device"]),
        ["peft-export"] = (PeftExportCheck.Run, ["method", "layers", "targets", "rank-pattern", "alpha-pattern", "fixture", "out"]),
    };

    /// <summary>The command a command line names, with its arguments parsed and checked against what it takes.</summary>
    public static (Func<BenchArgs, int> Run, BenchArgs Args) Check(string[] args)
    {
        var parsed = BenchArgs.Parse(args);
        if (!All.TryGetValue(parsed.Command, out var command))
            throw new ArgumentException($"unknown command '{parsed.Command}' ({string.Join(", ", All.Keys)}, help)");
        parsed.Allow(command.Options);
        return (command.Run, parsed);
    }
}
