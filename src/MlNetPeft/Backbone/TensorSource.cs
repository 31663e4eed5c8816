using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Named tensors that a loader reads one at a time, copying each into its parameter and disposing it before reading
/// the next: loaded from a file (<see cref="SafeTensorsReader"/>, <see cref="PyTorchCheckpointReader"/>), a checkpoint never sits in memory whole
/// beside the model it fills (for roberta-base, 500 MB less at every load).
/// </summary>
internal interface ITensorSource : IDisposable
{
    /// <summary>The names of the tensors it holds.</summary>
    IEnumerable<string> Names { get; }

    /// <summary>A new tensor of <paramref name="name"/> (the caller disposes it), on the CPU in its stored dtype, or
    /// null when there is none.</summary>
    Tensor? Read(string name);

    /// <summary>Reads <paramref name="name"/> straight into <paramref name="target"/> (a contiguous CPU tensor) where
    /// the source holds it in the target's dtype and shape, and says whether it did; otherwise the caller reads and
    /// copies.</summary>
    bool TryReadInto(string name, Tensor target) => false;

    /// <summary>Whether data of <paramref name="type"/> and <paramref name="shape"/>, read as bytes, is exactly
    /// <paramref name="target"/>'s memory: what <see cref="TryReadInto"/> needs.</summary>
    static bool CanReadInto(Tensor target, ScalarType type, long[] shape) =>
        type == target.dtype && shape.SequenceEqual(target.shape) && target.device_type == DeviceType.CPU && target.is_contiguous();

    /// <summary>Every tensor, each a new one the caller disposes.</summary>
    Dictionary<string, Tensor> ReadAll()
    {
        using var scope = NewDisposeScope(); // on an error, those read so far go
        var all = Names.ToDictionary(n => n, n => Read(n)!);
        foreach (var t in all.Values) t.MoveToOuterDisposeScope();
        return all;
    }
}

/// <summary>Tensors already in memory as a source: each read is an alias the caller may dispose. Disposing the source
/// disposes the tensors when it <paramref name="owns"/> them.</summary>
internal sealed class TensorDictionary(IReadOnlyDictionary<string, Tensor> tensors, bool owns = false) : ITensorSource
{
    public IEnumerable<string> Names => tensors.Keys;

    public Tensor? Read(string name) => tensors.TryGetValue(name, out var t) ? t.alias() : null;

    public void Dispose()
    {
        if (owns) foreach (var t in tensors.Values) t.Dispose();
    }
}
