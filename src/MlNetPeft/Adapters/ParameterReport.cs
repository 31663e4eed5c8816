using System.Text;
using TorchSharp;

namespace MlNetPeft.Adapters;

/// <summary>Trainable parameters of a fine-tuned model, per adapter component and for the head.</summary>
public sealed class ParameterReport
{
    internal ParameterReport(string method, IReadOnlyList<(string Name, string Shape, long Count)> rows, long backboneCount,
        IReadOnlyList<(string Name, int InitialRank, int FinalRank, long EffectiveCount)> ranks)
    {
        Method = method;
        Rows = rows;
        BackboneCount = backboneCount;
        Ranks = ranks;
    }

    /// <summary>Adapter method ("lora", "msplora").</summary>
    public string Method { get; }

    /// <summary>One row per trainable tensor group: component name, shapes, parameter count.</summary>
    public IReadOnlyList<(string Name, string Shape, long Count)> Rows { get; }

    /// <summary>Frozen backbone parameters.</summary>
    public long BackboneCount { get; }

    /// <summary>Trainable parameters besides the head: adapters (and the biases their Bias trains), or the whole
    /// backbone for full fine-tuning.</summary>
    public long AdapterCount => Rows.Where(r => r.Name != "classifier").Sum(r => r.Count);

    /// <summary>Trainable head parameters.</summary>
    public long HeadCount => Rows.Where(r => r.Name == "classifier").Sum(r => r.Count);

    /// <summary>All trainable parameters.</summary>
    public long TrainableCount => AdapterCount + HeadCount;

    /// <summary>For pruned methods (AdaLoRA, LoRA²): initial and kept rank of each adapted matrix, and the adapter
    /// parameters that still matter. Empty for the others.</summary>
    public IReadOnlyList<(string Name, int InitialRank, int FinalRank, long EffectiveCount)> Ranks { get; }

    /// <summary>Singular values kept in all (the budget reached); 0 when nothing is pruned.</summary>
    public int RankBudget => Ranks.Sum(r => r.FinalRank);

    /// <summary>Trainable parameters that still matter after pruning (head included).</summary>
    public long EffectiveTrainableCount => Ranks.Count == 0 ? TrainableCount : Ranks.Sum(r => r.EffectiveCount) + HeadCount;

    internal static ParameterReport Of(PeftModel model)
    {
        long encoder = model.Network.Encoder.parameters().Sum(p => p.numel());
        var trained = model.TrainedBackbone().ToList();
        long trainedCount = trained.Sum(p => p.Parameter.numel());
        var rows = model.Adapters.Components
            .Select(c => (c.Name, Shape(c.Component), c.Component.parameters().Sum(p => p.numel())))
            .Concat(model.Config.TrainsBackbone ? [("roberta", "every backbone weight", encoder)]
                : trained.Count > 0 ? [("roberta", $"{trained.Count} biases", trainedCount)] : [])
            .Append(("classifier", Shape(model.Network.Head), model.Network.Head.parameters().Sum(p => p.numel())))
            .ToList();
        long backbone = encoder - trainedCount;
        var ranks = model.Adapters.Components
            .Where(c => c.Component is LoraSquared.SvdUpdate)
            .Select(c => (SvdUpdate: (LoraSquared.SvdUpdate)c.Component, c.Name))
            .Select(c => (c.Name, c.SvdUpdate.Rank, c.SvdUpdate.KeptRank, c.SvdUpdate.EffectiveParameterCount(c.SvdUpdate.KeptRank)))
            .ToList();
        return new ParameterReport(model.Config.MethodName, rows, backbone, ranks);
    }

    private static string Shape(torch.nn.Module module) =>
        string.Join(" ", module.named_parameters().Select(p => $"{p.name}[{string.Join("x", p.parameter.shape)}]"));

    /// <summary>A plain-text table.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        int width = Math.Max(9, Rows.Max(r => r.Name.Length));
        sb.AppendLine($"{"component".PadRight(width)}  {"parameters",10}  shapes");
        foreach (var (name, shape, count) in Rows) sb.AppendLine($"{name.PadRight(width)}  {count,10:N0}  {shape}");
        sb.AppendLine($"{Method} adapters {AdapterCount:N0} + head {HeadCount:N0} = {TrainableCount:N0} trainable; " +
                      $"{BackboneCount:N0} frozen ({100.0 * TrainableCount / (TrainableCount + BackboneCount):F3}% trainable)");
        if (Ranks.Count > 0)
        {
            sb.AppendLine($"{"matrix".PadRight(width)}  rank (initial → kept)");
            foreach (var (name, initial, final, _) in Ranks) sb.AppendLine($"{name.PadRight(width)}  {initial} → {final}");
            sb.AppendLine($"budget reached: {RankBudget} of {Ranks.Sum(r => r.InitialRank)} singular values " +
                          $"(average rank {RankBudget / (double)Ranks.Count:F2}); {EffectiveTrainableCount:N0} parameters still in use");
        }
        return sb.ToString();
    }
}
