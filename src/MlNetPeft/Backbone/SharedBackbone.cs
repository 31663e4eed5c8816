using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// One copy of a backbone's frozen weights that the models loaded on it share (<c>LoadSettings.ShareBackbone</c>):
/// each model's frozen parameters are made views of it (<c>set_</c>), so a service holding N models fine-tuned from
/// roberta-base keeps its 0.5 GB once, as PEFT keeps one base model under several adapters. A copy is for one
/// backbone file (its SHA-256), device and dtype. The first model to load gives its weights; later ones take what the
/// copy has and give what it lacks (a weight another model trained, such as a bias, is each model's own). Counted: the
/// copy lets go of its tensors when the last model using it is disposed, and libtorch frees each with its last view.
/// </summary>
internal sealed class SharedBackbone
{
    private static readonly Dictionary<string, SharedBackbone> Copies = new(StringComparer.Ordinal);

    private readonly string _key;
    private readonly Dictionary<string, Tensor> _tensors = new(StringComparer.Ordinal);
    private readonly object _loading = new();
    private readonly List<IDisposable> _kept = [];
    private int _models;

    private SharedBackbone(string key) => _key = key;

    /// <summary>The copy for a backbone on a device and dtype, counting one more model until <see cref="Leave"/>.</summary>
    public static SharedBackbone Join(string sha256, Device device, ScalarType dtype)
    {
        var key = $"{sha256} {device} {dtype}";
        lock (Copies)
        {
            if (!Copies.TryGetValue(key, out var copy)) Copies[key] = copy = new SharedBackbone(key);
            copy._models++;
            return copy;
        }
    }

    /// <summary>Models using a copy, over all copies (for tests: zero once every such model is disposed).</summary>
    internal static int ModelsSharing
    {
        get { lock (Copies) return Copies.Values.Sum(c => c._models); }
    }

    public void Leave()
    {
        lock (Copies)
        {
            if (--_models > 0) return;
            Copies.Remove(_key);
            foreach (var tensor in _tensors.Values) tensor.Dispose();
            _tensors.Clear();
            foreach (var item in _kept) item.Dispose();
            _kept.Clear();
        }
    }

    /// <summary>Held while a model loads: one load at a time per copy, so the second model finds the first's weights.</summary>
    public IDisposable Loading()
    {
        Monitor.Enter(_loading);
        return new Exit(_loading);
    }

    /// <summary>Keeps something else the sharing models use (a zip's embedded backbone file) until the copy goes; while
    /// a model loads (<see cref="Loading"/>).</summary>
    public void Keep(IDisposable item) => _kept.Add(item);

    /// <summary>What <see cref="Keep"/> kept of type <typeparamref name="T"/>; while a model loads.</summary>
    public T? Kept<T>() where T : class => _kept.OfType<T>().FirstOrDefault();

    /// <summary>Whether the copy has the encoder weight <paramref name="name"/> (HF's name without "roberta.") of this
    /// shape: the loader leaves it unread.</summary>
    public bool Has(string name, long[] shape) => _tensors.TryGetValue(name, out var t) && t.shape.SequenceEqual(shape);

    /// <summary>Gives up the memory of the frozen parameters the loader left unread (they have no values yet), so that
    /// moving or casting the model before <see cref="Share"/> does not convert it; trained ones are loaded from the model's
    /// own state instead.</summary>
    public void FreeUnread(RobertaModel encoder, Func<string, bool> trains)
    {
        using var _ = no_grad();
        foreach (var (name, parameter) in encoder.named_parameters())
            if (!trains(name) && Has(IAdaptedProjection.CheckpointName(name), parameter.shape))
                using (var none = empty(0, dtype: parameter.dtype, device: parameter.device)) parameter.set_(none);
    }

    /// <summary>
    /// Makes the frozen parameters of <paramref name="encoder"/> (on the copy's device and dtype, not training) views of
    /// the copy, and adds to it those it lacks. <paramref name="trains"/> names the encoder parameters the model trained
    /// (its own). An attention layer's packed query-key-value matrix is shared as one tensor, so the three projections
    /// stay one GEMM without a copy of their weights per model.
    /// </summary>
    public void Share(RobertaModel encoder, Func<string, bool> trains)
    {
        using var _ = no_grad();
        var own = new List<string>();
        foreach (var (name, parameter) in encoder.named_parameters())
        {
            var key = IAdaptedProjection.CheckpointName(name);
            if (trains(name)) own.Add(name);
            else if (!_tensors.TryGetValue(key, out var shared)) Offer(key, parameter);
            // A weight left unread for the copy has no elements until now.
            else if (parameter.numel() == 0 || shared.shape.SequenceEqual(parameter.shape)) parameter.set_(shared);
        }
        for (int i = 0; i < encoder.Layers.Count; i++)
        {
            var attention = encoder.Layers[i].SelfAttention;
            var prefix = $"encoder.layer.{i}.attention.self.";
            // A packed weight or bias is shared unless the model trained one of its three blocks.
            bool SharedPacked(string kind) => !own.Any(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith("." + kind, StringComparison.Ordinal));
            string weightKey = prefix + "packed weight", biasKey = prefix + "packed bias";
            bool weight = SharedPacked("weight"), bias = SharedPacked("bias");
            attention.PackProjections(weight ? _tensors.GetValueOrDefault(weightKey) : null, bias ? _tensors.GetValueOrDefault(biasKey) : null);
            if (weight) Offer(weightKey, attention.PackedWeight);
            if (bias) Offer(biasKey, attention.PackedBias);
        }
    }

    /// <summary>Adds <paramref name="tensor"/> (a new handle to it) under <paramref name="key"/> unless the copy has one.</summary>
    private void Offer(string key, Tensor? tensor)
    {
        if (tensor is not null && !_tensors.ContainsKey(key)) _tensors[key] = tensor.detach();
    }

    private sealed class Exit(object gate) : IDisposable
    {
        public void Dispose() => Monitor.Exit(gate);
    }
}
