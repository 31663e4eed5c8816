using MlNetPeft.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// Owns every trainable adapter component of a model, each registered exactly once under a stable name
/// (the names are the keys of the saved adapter file), and the wrapped Linears they feed.
/// </summary>
internal sealed class AdapterSet : nn.Module
{
    private readonly List<(string Name, nn.Module Component)> _components = new();
    private readonly List<(string Path, int Layer, string Target, AdaptedLinear Linear)> _wrapped = new();
    private RobertaModel? _encoder;
    private StackedLowRank? _stack;
    private bool _planned;

    /// <summary>Whether training forwards, and unmerged prediction, may stack the factors (on by default; off measures
    /// and tests the per-projection path).</summary>
    internal bool StackingEnabled { get; set; } = true;

    public AdapterSet() : base("adapters") { }

    public IReadOnlyList<(string Name, nn.Module Component)> Components => _components;
    /// <summary>Every wrapped projection: its module path, layer, target (see <see cref="AdapterTargets"/>) and wrapper.</summary>
    public IReadOnlyList<(string Path, int Layer, string Target, AdaptedLinear Linear)> Wrapped => _wrapped;

    /// <summary>Registers a component under <paramref name="name"/> (letters, digits and '_' only).</summary>
    public T Add<T>(string name, T component) where T : nn.Module
    {
        register_module(name, component);
        _components.Add((name, component));
        return component;
    }

    /// <summary>
    /// Wraps each target projection of each layer (of <paramref name="layers"/> only, when given):
    /// <paramref name="updatesFor"/>(layer, target, in, out) gives the updates (new or shared) that layer's projection
    /// adds.
    /// </summary>
    public void Attach(RobertaModel encoder, IReadOnlyList<string> targets,
        Func<int, string, int, int, IReadOnlyList<IWeightDelta>> updatesFor, bool fuse = false, IReadOnlyCollection<int>? layers = null)
    {
        _encoder = encoder;
        for (int i = 0; i < encoder.Layers.Count; i++)
        {
            if (layers is not null && !layers.Contains(i)) continue;
            var layer = encoder.Layers[i];
            foreach (var target in targets)
            {
                if (layer.Projection(target) is not Linear linear)
                    throw new InvalidOperationException($"layer {i} {target} already carries an adapter");
                var updates = updatesFor(i, target, (int)linear.in_features, (int)linear.out_features);
                var wrapped = new AdaptedLinear(linear, updates, fuse);
                layer.ReplaceProjection(target, wrapped);
                _wrapped.Add((AdapterTargets.ModulePath(i, target), i, target, wrapped));
            }
        }
    }

    public void Merge()
    {
        foreach (var w in _wrapped) w.Linear.Merge();
    }

    /// <summary>
    /// Gathers the adapter factors into one stack for a forward that records a graph (see <see cref="StackedLowRank"/>);
    /// true when it did, and then <see cref="ReleaseStacks"/> must follow the forward. Forwards without gradients
    /// (prediction, possibly from several threads at once) use each projection's own factors.
    /// </summary>
    public bool StackFactors(ScalarType dtype)
    {
        if (!is_grad_enabled() || Stack() is not { } stack) return false;
        stack.Prepare(dtype);
        return true;
    }

    /// <summary>For prediction with the adapters unmerged (a shared backbone): stacks the factors once and keeps them
    /// (see <see cref="StackedLowRank.Keep"/>); false where they do not stack (DoRA, targets that differ by layer), and
    /// each projection then adds its own update.</summary>
    public bool KeepStacks(ScalarType dtype)
    {
        if (Stack() is not { } stack) return false;
        stack.Keep(dtype);
        return true;
    }

    private StackedLowRank? Stack()
    {
        if (!StackingEnabled || _encoder is null || _wrapped.Any(w => w.Linear.IsMerged)) return null;
        if (!_planned) // the attention projections stack; other targets add their own updates
            (_stack, _planned) = (StackedLowRank.TryPlan(_encoder, _wrapped.Where(w => AdapterTargets.IsAttentionProjection(w.Target))
                .Select(w => (w.Layer, w.Target, w.Linear))), true);
        return _stack is { CanApply: true } ? _stack : null;
    }

    public void ReleaseStacks() => _stack?.Release();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _stack?.Dispose();
        base.Dispose(disposing);
    }
}
