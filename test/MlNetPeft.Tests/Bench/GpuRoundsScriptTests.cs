using System.Text.RegularExpressions;
using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

/// <summary>bench/gpu-rounds.sh runs on a lent GPU machine, a few minutes per task and rarely: a bench option renamed
/// since the script was written would cost that whole session, so every command line it runs is checked here.</summary>
[TestClass]
public sealed partial class GpuRoundsScriptTests
{
    [TestMethod]
    public void EveryBenchCommandItRunsTakesItsOptions()
    {
        var lines = ScriptLinesRunning("$bench ");
        Assert.IsGreaterThanOrEqualTo(10, lines.Length, "the script's bench command lines were not found");
        foreach (var line in lines)
        {
            var args = CommandLine(line);
            Assert.IsFalse(args.Any(a => a.StartsWith('$')), $"a shell substitution this test does not know in: {line}");
            try { BenchCommands.Check(args); }
            catch (ArgumentException e) { Assert.Fail($"{e.Message}, in gpu-rounds.sh: {line.Trim()}"); }
        }
    }

    /// <summary>The PyTorch + PEFT side cannot run here (no transformers): its options are checked against the
    /// script's argparse declarations.</summary>
    [TestMethod]
    public void ThePeftReferenceTakesTheOptionsItIsGiven()
    {
        var lines = ScriptLinesRunning("peft_reference.py ");
        Assert.IsNotEmpty(lines);
        var declared = File.ReadAllText(Path.Combine(TestData.RepoRoot, "bench", "peft_reference.py"));
        foreach (var option in lines.SelectMany(l => Option().Matches(l)).Select(m => m.Value))
            Assert.Contains($"add_argument(\"{option}\"", declared, $"peft_reference.py declares no {option}");
    }

    /// <summary>The script's lines (comments aside) that run <paramref name="program"/>.</summary>
    private static string[] ScriptLinesRunning(string program) =>
        File.ReadLines(Path.Combine(TestData.RepoRoot, "bench", "gpu-rounds.sh"))
            .Where(l => !l.TrimStart().StartsWith('#') && l.Contains(program, StringComparison.Ordinal)).ToArray();

    [GeneratedRegex(@"(?<=\s)--[\w-]+")]
    private static partial Regex Option();

    /// <summary>The bench's arguments on a script line: what follows "$bench" up to a pipe, with the script's loop
    /// variables and its first-round-only flag given values.</summary>
    private static string[] CommandLine(string line)
    {
        var command = line[(line.IndexOf("$bench ", StringComparison.Ordinal) + "$bench ".Length)..].Split(" | ")[0];
        command = FlagOnCondition().Replace(command, "$1")
            .Replace("\"$m\"", "lora").Replace("$m", "lora").Replace("$c", "--checkpoint");
        return command.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(a => a.Trim('"')).ToArray();
    }

    [GeneratedRegex(@"\$\(\[[^\]]*\] && echo (--[\w-]+)\)")]
    private static partial Regex FlagOnCondition();
}
