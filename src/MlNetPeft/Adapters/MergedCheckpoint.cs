using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A model's weights as a plain HF RobertaForSequenceClassification checkpoint, in fp32 under HF's key names: the
/// backbone with every adapter update added into its projection (PEFT's merge_and_unload), or the fine-tuned backbone
/// (full fine-tuning: its fp32 masters when it trained in bf16), and the head.
/// </summary>
internal static class MergedCheckpoint
{
    /// <summary>The safetensors bytes of the merged weights (a small model's: a .NET array holds under 2 GB).</summary>
    public static byte[] Save(PeftModel model)
    {
        using var stream = new MemoryStream();
        Write(model, stream);
        return stream.ToArray();
    }

    /// <summary>Writes the merged weights as a safetensors file to <paramref name="stream"/>, one tensor at a time.</summary>
    public static void Write(PeftModel model, Stream stream)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var trained = model.TrainableState(); // fp32 copies: the head, and trained backbone weights' masters
        var weights = new Dictionary<string, Tensor>();
        foreach (var (name, tensor) in model.Network.state_dict())
        {
            var key = IAdaptedProjection.CheckpointName(name);
            weights[key] = trained.TryGetValue(name, out var copy) ? copy : tensor.detach(); // converted as written
        }
        foreach (var (path, _, _, linear) in model.Adapters.Wrapped)
            if (!linear.IsMerged) // merged for prediction: the weight already holds the updates
                weights[path + ".weight"] = linear.MergedWeight(weights[path + ".weight"].to(ScalarType.Float32).cpu()); // in fp32
        SafeTensors.Write(stream, weights, new Dictionary<string, string> { ["format"] = "pt" }, ScalarType.Float32);
    }
}
