using System.Text.RegularExpressions;

namespace MlNetPeft.Adapters.Lora;

/// <summary>
/// PEFT's <c>target_modules</c> and our <c>Targets</c>, both ways. PEFT adapts a module when one listed name equals
/// its path or ends it after a '.', or, when the setting is a string, when the regular expression matches the whole
/// path. So "dense" means all three dense projections of a block, and "output.dense" the attention's as well.
/// </summary>
internal static class PeftTargetModules
{
    private const string Layer0 = "roberta.encoder.layer.0.";

    /// <summary>The targets a PEFT list of module names selects; a name that selects nothing is a FormatException.</summary>
    public static string[] FromNames(IReadOnlyList<string> names)
    {
        foreach (var name in names)
            if (!AdapterTargets.All.Any(t => Selects(name, t)))
                throw new FormatException($"target_modules: '{name}' names no projection of a RoBERTa block ({string.Join(", ", AdapterTargets.All)})");
        return AdapterTargets.All.Where(t => names.Any(name => Selects(name, t))).ToArray();
    }

    /// <summary>The targets a PEFT regular expression selects (matched against the whole module path).</summary>
    public static string[] FromPattern(string pattern)
    {
        string[] targets;
        try { targets = AdapterTargets.All.Where(t => Regex.IsMatch(Layer0 + AdapterTargets.ModulePath(t), $"^(?:{pattern})$")).ToArray(); }
        catch (ArgumentException e) { throw new FormatException($"target_modules: '{pattern}' is not a regular expression ({e.Message})", e); }
        return targets.Length > 0 ? targets : throw new FormatException($"target_modules: pattern '{pattern}' matches no projection of a RoBERTa block");
    }

    /// <summary>What PEFT needs to adapt exactly <paramref name="targets"/>: the names themselves where PEFT's suffix rule
    /// selects no more than them (always for query, key and value), else a pattern naming each path.</summary>
    public static object ToPeft(IReadOnlyList<string> targets)
    {
        if (FromNames(targets).Length == targets.Count) return targets;
        return @".*\.layer\.\d+\.(" + string.Join("|", targets.Select(t => Regex.Escape(AdapterTargets.ModulePath(t)))) + ")";
    }

    private static bool Selects(string name, string target)
    {
        var path = AdapterTargets.ModulePath(target);
        return path == name || path.EndsWith("." + name, StringComparison.Ordinal);
    }
}
