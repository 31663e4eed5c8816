using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// The tensors of a PEFT LoRA or AdaLoRA adapter file under this library's state names, for
/// <see cref="PeftModel.LoadTrainableState(IReadOnlyDictionary{string, TorchSharp.torch.Tensor}, string)"/>, with what PEFT's bias setting adds to a file: the trained biases under
/// the names of PEFT's model (an adapted projection's as "…query.base_layer.bias", or "…query.bias" as PEFT saved it
/// before it kept the Linear as base_layer), its untouched copy of the head ("classifier.original_module.*", skipped),
/// and the trained head under two names (which must then hold the same values).
/// </summary>
internal sealed class PeftAdapterState(PeftModel model, string file)
{
    private readonly HashSet<string> _trained = model.TrainedBackbone().Select(p => "roberta." + p.Name).ToHashSet();
    private readonly Dictionary<string, Tensor> _state = [];

    /// <summary>Adds the tensor saved as <paramref name="peftKey"/> under our <paramref name="name"/> for it.</summary>
    public void Add(string peftKey, string name, Tensor tensor)
    {
        if (peftKey.Contains(".original_module.", StringComparison.Ordinal)) return;
        if (!_trained.Contains(name) && name.EndsWith(".bias", StringComparison.Ordinal)
            && name[..^".bias".Length] + ".base_layer.bias" is var wrapped && _trained.Contains(wrapped))
            name = wrapped;
        if (_state.TryGetValue(name, out var seen) && !(seen.shape.SequenceEqual(tensor.shape) && seen.equal(tensor).all().item<bool>()))
            throw new InvalidDataException($"{file}: '{peftKey}' differs from another tensor saved for '{name}'");
        _state[name] = tensor;
    }

    /// <summary>Loads what was added. A trained bias the file lacks keeps the backbone's value, as PEFT's loader leaves
    /// it: PEFT's "lora_only" save looks for an adapted layer's bias without base_layer in its name, so saves none.
    /// Call inside a dispose scope (the copies made here are temporary).</summary>
    public void LoadInto()
    {
        foreach (var (name, parameter) in model.TrainedBackbone())
            _state.TryAdd("roberta." + name, parameter.detach().to(ScalarType.Float32).cpu().clone());
        model.LoadTrainableState(_state, file);
    }
}
