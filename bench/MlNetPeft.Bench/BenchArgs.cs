using System.Globalization;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>Command line of the benchmark program: a command, then --name value pairs and --flags.</summary>
internal sealed class BenchArgs
{
    private readonly Dictionary<string, string> _values = new();

    public required string Command { get; init; }

    public static BenchArgs Parse(string[] args)
    {
        if (args.Length == 0) throw new ArgumentException("no command given");
        var parsed = new BenchArgs { Command = args[0] };
        for (int i = 1; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{args[i]}'");
            bool flag = i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal);
            parsed._values[args[i][2..]] = flag ? "true" : args[++i];
        }
        return parsed;
    }

    /// <summary>Refuses an option the command does not take (a misspelt option would otherwise leave its default in force).</summary>
    public void Allow(IReadOnlyCollection<string> options)
    {
        if (_values.Keys.FirstOrDefault(k => !options.Contains(k)) is { } unknown)
            throw new ArgumentException($"{Command} takes no option --{unknown} (it takes {string.Join(", ", options.Select(o => "--" + o))})");
    }

    public string Text(string name, string fallback) => _values.GetValueOrDefault(name, fallback);
    public string? Text(string name) => _values.GetValueOrDefault(name);
    public int Int(string name, int fallback) => Number(name, fallback, int.Parse);
    public double Double(string name, double fallback) => Number(name, fallback, double.Parse);

    private T Number<T>(string name, T fallback, Func<string, IFormatProvider, T> parse)
    {
        if (!_values.TryGetValue(name, out var text)) return fallback;
        try { return parse(text, CultureInfo.InvariantCulture); }
        catch (FormatException) { throw new ArgumentException($"--{name} takes a number, not '{text}'"); }
    }
    public bool Flag(string name) => _values.ContainsKey(name);
    public string[] List(string name, string fallback) => Text(name, fallback).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>--targets: "all" (every Linear of a block), a comma list of AdapterTargets names, or null (each
    /// method's default, query and value).</summary>
    public string[]? Targets() => Text("targets") switch
    {
        null => null,
        "all" => [.. MlNetPeft.Adapters.AdapterTargets.All],
        var list => List("targets", list),
    };

    /// <summary>--precision: fp32, bf16 or fp16; null when not given.</summary>
    public ComputePrecision? Precision() => Text("precision") switch
    {
        null => null,
        "fp32" => ComputePrecision.Float32,
        "bf16" => ComputePrecision.BFloat16,
        "fp16" => ComputePrecision.Float16,
        var other => throw new ArgumentException($"--precision takes fp32, bf16 or fp16, not '{other}'"),
    };

    /// <summary>The repository root (holds models/, data/ and bench/), found above the program.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MlNetPeft.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
