using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// The feed-forward activations a RoBERTa <c>config.json</c> may name in <c>hidden_act</c>: those of transformers'
/// ACT2FN that a RoBERTa-architecture checkpoint uses, each computing what transformers computes for that name.
/// </summary>
internal static class HiddenActivation
{
    private static readonly Dictionary<string, Func<Tensor, Tensor>> ByName = new()
    {
        // Exact, with erf (gelu_python is transformers' own code for the same function).
        ["gelu"] = x => nn.functional.gelu(x),
        ["gelu_python"] = x => nn.functional.gelu(x),
        // The tanh approximation: transformers writes it out (gelu_new, gelu_fast) or calls PyTorch's (gelu_pytorch_tanh);
        // all three are 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) up to rounding.
        ["gelu_new"] = TanhGelu,
        ["gelu_fast"] = TanhGelu,
        ["gelu_pytorch_tanh"] = TanhGelu,
        ["quick_gelu"] = x => x.mul(x.mul(1.702).sigmoid()),
        ["relu"] = x => nn.functional.relu(x),
        ["silu"] = x => nn.functional.silu(x),
        ["swish"] = x => nn.functional.silu(x),
    };

    /// <summary>Why <paramref name="name"/> cannot be used, with the names that can; null when it can.</summary>
    public static string? Refusal(string name) => ByName.ContainsKey(name)
        ? null
        : $"hidden_act '{name}' is not supported (supported: {string.Join(", ", ByName.Keys)})";

    /// <summary>The activation called <paramref name="name"/>.</summary>
    public static Func<Tensor, Tensor> Of(string name) =>
        ByName.TryGetValue(name, out var activation) ? activation : throw new InvalidDataException(Refusal(name));

    private static Tensor TanhGelu(Tensor x) => nn.functional.gelu(x, GELU.Approximate.tanh);
}
