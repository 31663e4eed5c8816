using MlNetPeft.Backbone;

namespace MlNetPeft.Adapters.Msplora;

/// <summary>
/// MSPLoRA (Zhao et al. 2025): for each target projection, ΔW = B_g·A_g (one pair shared by all layers)
/// + B_m·A_m (one pair per contiguous layer group) + B_l·A_l (one pair per layer), with ranks 8/4/2 by default.
/// With more than three ranks, every level between the first and the last is a mid level.
/// </summary>
public sealed record MsploraConfig : AdapterConfig
{
    /// <summary>Ranks from the global level down to the layer-specific level (the authors halve: 8, 4, 2).</summary>
    public int[] Ranks { get; init; } = [8, 4, 2];

    /// <summary>Number of contiguous layer groups that share a mid-level pair.</summary>
    public int GroupCount { get; init; } = 3;

    /// <summary>Run each layer's global, mid and layer pairs as one rank-Σr down- and up-projection (same result,
    /// fewer kernels; each pair still draws its own dropout mask, as the authors' separate dropouts do, though not the
    /// same masks from the same seed as separate pairs).</summary>
    public bool FuseProjections { get; init; } = true;

    public override string MethodName => "msplora";

    internal override bool HasLoraPairs => true;

    /// <summary>Group of a layer, as the authors split N layers into equal float ranges.</summary>
    public int GroupOf(int layer, int layers) => Math.Min(layer * GroupCount / layers, GroupCount - 1);

    internal override AdapterSet Attach(RobertaModel encoder)
    {
        var set = new AdapterSet();
        int layers = encoder.Layers.Count, last = Ranks.Length - 1;
        var components = new Dictionary<string, LowRankUpdate>();
        set.Attach(encoder, Targets, (layer, target, inF, outF) =>
        {
            // Created in pyramid order (global, mid groups, layers) so the parameter report reads top-down.
            if (layer == 0)
                for (int level = 0; level <= last; level++)
                    for (int i = 0; i < (level == 0 ? 1 : level == last ? layers : GroupCount); i++)
                    {
                        var name = ComponentName(target, level, i);
                        components[name] = set.Add(name, new LowRankUpdate(inF, outF, Ranks[level], Alpha, Dropout));
                    }
            return Enumerable.Range(0, Ranks.Length)
                .Select(level => (IWeightDelta)components[ComponentName(target, level, level == last ? layer : GroupOf(layer, layers))])
                .ToList();
        }, FuseProjections);
        return set;
    }

    /// <summary>"query_global", "query_mid1_group2" (level 1, group 2), "query_layer7".</summary>
    private string ComponentName(string target, int level, int index)
    {
        var part = AdapterTargets.NamePart(target);
        return level == 0 ? $"{part}_global" : level == Ranks.Length - 1 ? $"{part}_layer{index}" : $"{part}_mid{level}_group{index}";
    }

    public override void Validate(int layers)
    {
        base.Validate(layers);
        if (Ranks is null || Ranks.Length == 0 || Ranks.Any(r => r <= 0))
            throw new ArgumentException("Ranks: one positive rank per level is required (default 8, 4, 2)");
        if (GroupCount <= 0 || GroupCount > layers)
            throw new ArgumentException($"GroupCount must be between 1 and the layer count {layers}, got {GroupCount}");
    }
}
