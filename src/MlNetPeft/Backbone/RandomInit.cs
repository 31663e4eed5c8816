using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Every random initial value of the model's parameters is drawn here, and none inside <see cref="Skipped"/> (as HF's
/// <c>no_init_weights</c> when loading): a model that loads all its weights right after it is built (a model zip
/// being loaded) then neither spends the time (1.5 s for roberta-base's modules on 2 cores) nor draws from libtorch's
/// random generator, which a training on another thread is using for its dropout masks. Skipped parameters hold
/// whatever memory they were given until loaded.
/// </summary>
internal static class RandomInit
{
    [ThreadStatic] private static int t_skipped;

    /// <summary>Until disposed, parameters built on this thread are left uninitialized.</summary>
    public static IDisposable Skipped()
    {
        t_skipped++;
        return new Scope();
    }

    private static bool Skipping => t_skipped > 0;

    /// <summary>nn.Linear, initialized as PyTorch's (Kaiming-uniform weight, uniform bias) unless skipped.</summary>
    public static Linear Linear(long inFeatures, long outFeatures)
    {
        if (!Skipping) return nn.Linear(inFeatures, outFeatures);
        using var _ = no_grad();
        return nn.Linear(new Parameter(empty(outFeatures, inFeatures).DetachFromDisposeScope()),
            new Parameter(empty(outFeatures).DetachFromDisposeScope()));
    }

    /// <summary>nn.Embedding, initialized as PyTorch's (N(0, 1), the padding row zero) unless skipped.</summary>
    public static Embedding Embedding(long count, long dimensions, long? paddingIndex = null)
    {
        if (!Skipping) return nn.Embedding(count, dimensions, padding_idx: paddingIndex);
        // TorchSharp's native Embedding draws its weight on construction (from_pretrained too, then replaces it); a
        // table of no rows draws nothing. It goes without padding_idx, which only keeps the padding row's gradient at
        // zero: a skipped model is loaded to predict (training further starts a new model from its state).
        var table = nn.Embedding(0, dimensions);
        table.weight = new Parameter(empty(count, dimensions).DetachFromDisposeScope(), requires_grad: false);
        return table;
    }

    /// <summary>Fills <paramref name="tensor"/> from N(mean, std²) unless skipped.</summary>
    public static void Normal_(Tensor tensor, double mean, double std)
    {
        if (!Skipping) nn.init.normal_(tensor, mean, std);
    }

    /// <summary>A new tensor from N(0, std²) (TorchSharp's <c>normal</c>: randn scaled) unless skipped.</summary>
    public static Tensor Normal(double std, params long[] shape) => Skipping ? empty(shape) : normal(0, std, shape);

    /// <summary>Fills <paramref name="tensor"/> as PyTorch's Kaiming-uniform with slope <paramref name="a"/> unless skipped.</summary>
    public static void KaimingUniform_(Tensor tensor, double a)
    {
        if (!Skipping) nn.init.kaiming_uniform_(tensor, a);
    }

    private sealed class Scope : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            t_skipped--;
        }
    }
}
