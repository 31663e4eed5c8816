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
    private readonly List<(string Path, AdaptedLinear Linear)> _wrapped = new();
    private StackedLowRank[]? _stacks;

    public AdapterSet() : base("adapters") { }

    public IReadOnlyList<(string Name, nn.Module Component)> Components => _components;
    public IReadOnlyList<(string Path, AdaptedLinear Linear)> Wrapped => _wrapped;

    /// <summary>Registers a component under <paramref name="name"/> (letters, digits and '_' only).</summary>
    public T Add<T>(string name, T component) where T : nn.Module
    {
        register_module(name, component);
        _components.Add((name, component));
        return component;
    }

    /// <summary>
    /// Wraps each target projection of each layer: <paramref name="updatesFor"/>(layer, target, in, out) gives
    /// the updates (new or shared) that layer's projection adds.
    /// </summary>
    public void Attach(RobertaModel encoder, IReadOnlyList<string> targets,
        Func<int, string, int, int, IReadOnlyList<IWeightDelta>> updatesFor, bool fuse = false)
    {
        for (int i = 0; i < encoder.Layers.Count; i++)
        {
            var attention = encoder.Layers[i].SelfAttention;
            foreach (var target in targets)
            {
                if (attention.Projection(target) is not Linear linear)
                    throw new InvalidOperationException($"layer {i} {target} already carries an adapter");
                var updates = updatesFor(i, target, (int)linear.in_features, (int)linear.out_features);
                var wrapped = new AdaptedLinear(linear, updates, fuse);
                attention.ReplaceProjection(target, wrapped);
                _wrapped.Add(($"roberta.encoder.layer.{i}.attention.self.{target}", wrapped));
            }
        }
    }

    public void Merge()
    {
        foreach (var (_, linear) in _wrapped) linear.Merge();
    }

    /// <summary>
    /// Gathers the LoRA factors into stacks for one forward that records a graph (see <see cref="StackedLowRank"/>);
    /// true when it did, and then <see cref="ReleaseStacks"/> must follow the forward. Forwards without gradients
    /// (prediction, possibly from several threads at once) keep each projection's own factors.
    /// </summary>
    public bool StackFactors(ScalarType dtype)
    {
        if (!is_grad_enabled() || _wrapped.Any(w => w.Linear.IsMerged)) return false;
        _stacks ??= StackedLowRank.Plan(_wrapped.Select(w => w.Linear));
        foreach (var stack in _stacks) stack.Prepare(dtype);
        return _stacks.Length > 0;
    }

    public void ReleaseStacks()
    {
        foreach (var stack in _stacks ?? []) stack.Release();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) foreach (var stack in _stacks ?? []) stack.Dispose();
        base.Dispose(disposing);
    }
}
