using System.Text.RegularExpressions;

namespace MlNetPeft.Adapters.Lora;

/// <summary>
/// PEFT's <c>target_modules</c> and our <c>Targets</c>, both ways. PEFT adapts a module when one listed name equals
/// its path or ends it after a '.', or, when the setting is a string, when the regular expression matches the whole
/// path. So "dense" means all three dense projections of a block, and "output.dense" the attention's as well.
/// </summary>
internal static class PeftTargetModules
{
    private const int LayersTried = 256; // more than any RoBERTa has

    /// <summary>The targets a PEFT list of module names selects; a name that selects nothing is a FormatException.</summary>
    public static string[] FromNames(IReadOnlyList<string> names)
    {
        foreach (var name in names)
            if (!AdapterTargets.All.Any(t => Selects(name, t)))
                throw new FormatException($"target_modules: '{name}' names no projection of a RoBERTa block ({string.Join(", ", AdapterTargets.All)})");
        return AdapterTargets.All.Where(t => names.Any(name => Selects(name, t))).ToArray();
    }

    /// <summary>The targets a PEFT regular expression selects (matched against the whole module path), and the layers
    /// it selects them in (null: every layer); a pattern that selects targets in differing layers is a FormatException.</summary>
    public static (string[] Targets, int[]? Layers) FromPattern(string pattern)
    {
        Regex regex;
        try { regex = new Regex($"^(?:{pattern})$"); }
        catch (ArgumentException e) { throw new FormatException($"target_modules: '{pattern}' is not a regular expression ({e.Message})", e); }
        var layersOf = AdapterTargets.All.ToDictionary(t => t, t => Enumerable.Range(0, LayersTried)
            .Where(i => regex.IsMatch(AdapterTargets.ModulePath(i, t))).ToArray());
        var targets = AdapterTargets.All.Where(t => layersOf[t].Length > 0).ToArray();
        if (targets.Length == 0) throw new FormatException($"target_modules: pattern '{pattern}' matches no projection of a RoBERTa block");
        var layers = layersOf[targets[0]];
        if (targets.Any(t => !layersOf[t].SequenceEqual(layers)))
            throw new FormatException($"target_modules: pattern '{pattern}' adapts its projections in differing layers, which is not supported");
        return (targets, layers.Length == LayersTried ? null : layers);
    }

    /// <summary>What PEFT needs to adapt exactly <paramref name="targets"/> (in <paramref name="layers"/> only, when given):
    /// the names themselves where PEFT's suffix rule selects no more than them (always for query, key and value; the
    /// layers then go in layers_to_transform), else a pattern naming each path and the layers.</summary>
    public static object ToPeft(IReadOnlyList<string> targets, IReadOnlyList<int>? layers = null)
    {
        if (FromNames(targets).Length == targets.Count) return targets;
        var index = layers is null ? @"\d+" : "(?:" + string.Join("|", layers) + ")";
        return @".*\.layer\." + index + @"\.(" + string.Join("|", targets.Select(t => Regex.Escape(AdapterTargets.ModulePath(t)))) + ")";
    }

    /// <summary>PEFT's get_pattern_key: the first key of a rank_pattern or alpha_pattern whose regular expression
    /// matches the end of <paramref name="path"/> after a '.' (or all of it), or null.</summary>
    public static string? PatternKey(IEnumerable<string> keys, string path) =>
        keys.FirstOrDefault(key => Regex.IsMatch(path, $@"^(?:.*\.)?(?:{key})$"));

    /// <summary>A rank_pattern or alpha_pattern key that PEFT matches to exactly this module path.</summary>
    public static string PatternKeyFor(string path) => Regex.Escape(path);

    private static bool Selects(string name, string target)
    {
        var path = AdapterTargets.ModulePath(target);
        return path == name || path.EndsWith("." + name, StringComparison.Ordinal);
    }
}
