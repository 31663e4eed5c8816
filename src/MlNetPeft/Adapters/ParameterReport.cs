using System.Text;
using TorchSharp;

namespace MlNetPeft.Adapters;

/// <summary>Trainable parameters of a fine-tuned model, per adapter component and for the head.</summary>
public sealed class ParameterReport
{
    internal ParameterReport(string method, IReadOnlyList<(string Name, string Shape, long Count)> rows, long backboneCount)
    {
        Method = method;
        Rows = rows;
        BackboneCount = backboneCount;
    }

    /// <summary>Adapter method ("lora", "msplora").</summary>
    public string Method { get; }

    /// <summary>One row per trainable tensor group: component name, shapes, parameter count.</summary>
    public IReadOnlyList<(string Name, string Shape, long Count)> Rows { get; }

    /// <summary>Frozen backbone parameters.</summary>
    public long BackboneCount { get; }

    /// <summary>Trainable adapter parameters (without the head).</summary>
    public long AdapterCount => Rows.Where(r => r.Name != "classifier").Sum(r => r.Count);

    /// <summary>Trainable head parameters.</summary>
    public long HeadCount => Rows.Where(r => r.Name == "classifier").Sum(r => r.Count);

    /// <summary>All trainable parameters.</summary>
    public long TrainableCount => AdapterCount + HeadCount;

    internal static ParameterReport Of(PeftModel model)
    {
        var rows = model.Adapters.Components
            .Select(c => (c.Name, Shape(c.Component), c.Component.parameters().Sum(p => p.numel())))
            .Append(("classifier", Shape(model.Network.Head), model.Network.Head.parameters().Sum(p => p.numel())))
            .ToList();
        long backbone = model.Network.Encoder.parameters().Sum(p => p.numel());
        return new ParameterReport(model.Config.MethodName, rows, backbone);
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
        return sb.ToString();
    }
}
