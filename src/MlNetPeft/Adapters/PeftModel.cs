using MlNetPeft.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A RoBERTa classifier with a frozen backbone, adapters attached by an <see cref="AdapterConfig"/>, and a
/// trainable head. What is trained and saved is <see cref="TrainableState"/>: adapters + head, and the backbone
/// parameters the config trains (all in full fine-tuning, the biases an adapter method's Bias names).
/// </summary>
internal sealed class PeftModel : IDisposable
{
    private PeftModel(RobertaForSequenceClassification network, AdapterSet adapters, AdapterConfig config)
    {
        Network = network;
        Adapters = adapters;
        Config = config;
    }

    public RobertaForSequenceClassification Network { get; }
    public AdapterSet Adapters { get; }
    public AdapterConfig Config { get; }
    public Device Device { get; private set; } = CPU;
    public ScalarType BackboneDType { get; private set; } = ScalarType.Float32;

    /// <summary>fp32 masters of a training backbone stored in lower precision, by parameter name (see <see cref="To"/>).</summary>
    private Dictionary<string, Tensor>? _masters;

    /// <summary>Builds the network from a checkpoint's tensors, freezes it and attaches adapters.</summary>
    public static PeftModel Create(RobertaConfig config, int outputs, AdapterConfig adapters,
        IReadOnlyDictionary<string, Tensor> backboneWeights, string source, bool loadHead = false)
    {
        using var weights = new TensorDictionary(backboneWeights);
        return Create(config, outputs, adapters, weights, source, loadHead);
    }

    /// <summary>As above, reading the backbone's weights one at a time from <paramref name="backboneWeights"/>, but for
    /// those <paramref name="shared"/> has: they come from it later (<see cref="ShareBackbone"/>).</summary>
    public static PeftModel Create(RobertaConfig config, int outputs, AdapterConfig adapters,
        ITensorSource backboneWeights, string source, bool loadHead = false, SharedBackbone? shared = null)
    {
        adapters.Validate(config.NumHiddenLayers);
        var network = new RobertaForSequenceClassification(config, outputs);
        CheckpointLoader.Load(network, backboneWeights, source, loadHead, shared is null ? null : shared.Has);
        foreach (var p in network.parameters()) p.requires_grad = false;
        var set = adapters.Attach(network.Encoder);
        foreach (var p in network.Head.parameters()) p.requires_grad = true;
        // After attaching: an adapted projection's Linear is named base_layer, which Bias = LoraOnly goes by.
        foreach (var (name, p) in network.Encoder.named_parameters())
            if (adapters.TrainsBackboneParameter(name)) p.requires_grad = true;
        shared?.FreeUnread(network.Encoder, adapters.TrainsBackboneParameter);
        return new PeftModel(network, set, adapters);
    }

    /// <summary>Whether the frozen backbone weights are views of a <see cref="SharedBackbone"/>.</summary>
    public bool SharesBackbone { get; private set; }

    /// <summary>For prediction, once on its device and dtype and frozen: makes the frozen backbone weights views of
    /// <paramref name="shared"/> (and gives it those it lacks).</summary>
    public void ShareBackbone(SharedBackbone shared)
    {
        shared.Share(Network.Encoder, Config.TrainsBackboneParameter);
        SharesBackbone = true;
    }

    /// <summary>Head, adapter and trained backbone parameters, named as in <see cref="TrainableState"/>.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters() =>
        Network.Head.named_parameters().Select(p => ("classifier." + p.name, p.parameter))
            .Concat(Adapters.named_parameters().Select(p => ("adapters." + p.name, p.parameter)))
            .Concat(TrainedBackbone().Select(p => ("roberta." + p.Name, p.Parameter)));

    public IEnumerable<Parameter> HeadParameters() => Network.Head.parameters();

    public IEnumerable<Parameter> AdapterParameters() => Adapters.parameters();

    /// <summary>The backbone parameters that train (every one in full fine-tuning, else the biases of Bias), named as in the encoder.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> TrainedBackbone() =>
        Network.Encoder.named_parameters().Where(p => Config.TrainsBackboneParameter(p.name)).Select(p => (p.name, p.parameter));

    public IEnumerable<Parameter> TrainedBackboneParameters() => TrainedBackbone().Select(p => p.Parameter);

    public long TrainableCount => TrainableParameters().Sum(p => p.Parameter.numel());

    /// <summary>Moves to a device; the backbone may be stored in bf16 (manual mixed precision: TorchSharp has no
    /// autocast). Adapters and head stay fp32. Backbone parameters that train then train as bf16 compute copies of fp32
    /// master weights (<see cref="TrainedBackboneMasters"/>; bf16 weights alone would lose updates below their
    /// resolution), unless <paramref name="keepMasters"/> is false (a model loaded for prediction only).</summary>
    public void To(Device device, ScalarType backboneDType, bool keepMasters = true)
    {
        if (device.type == DeviceType.CPU) Training.CpuAllocator.KeepFreedMemory();
        else if (device.type == DeviceType.CUDA) Training.CudaAttention.AvoidCudnnPlans();
        if (_masters is not null && backboneDType != BackboneDType)
            throw new InvalidOperationException($"the backbone trains in {BackboneDType} against fp32 masters; it cannot change to {backboneDType}");
        Network.to(device);
        Adapters.to(device);
        if (_masters is not null)
            foreach (var (name, master) in _masters.ToList())
            {
                _masters[name] = master.to(device).DetachFromDisposeScope();
                master.Dispose(); // the old handle: on the same device the new one shares its storage
            }
        else if (keepMasters && backboneDType != ScalarType.Float32 && TrainedBackbone().Any())
        {
            using var _ = no_grad();
            _masters = TrainedBackbone().ToDictionary(p => p.Name, p => p.Parameter.detach().clone().DetachFromDisposeScope());
        }
        // Adapters are not submodules of the encoder, so this converts the backbone alone.
        if (backboneDType != ScalarType.Float32) Network.Encoder.to(backboneDType);
        foreach (var layer in Network.Encoder.Layers) layer.SelfAttention.PackProjections();
        Device = device;
        BackboneDType = backboneDType;
    }

    /// <summary>The fp32 masters of the trained backbone parameters when the backbone is in lower precision, in the
    /// order of <see cref="TrainedBackboneParameters"/>; null otherwise. The optimizer updates these and casts them into
    /// the weights.</summary>
    public IReadOnlyList<Tensor>? TrainedBackboneMasters() =>
        _masters is null ? null : TrainedBackbone().Select(p => _masters[p.Name]).ToList();

    /// <summary>Logits (fp32) for a batch of token ids; <paramref name="attentionMask"/> is null when nothing is padded.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask)
    {
        bool stacked = Adapters.StackFactors(BackboneDType);
        try
        {
            var hidden = Network.Encoder.FirstTokenState(inputIds, attentionMask);
            return Network.Head.call(hidden.to(ScalarType.Float32));
        }
        finally
        {
            if (stacked) Adapters.ReleaseStacks();
        }
    }

    /// <summary>For prediction only: no parameter keeps a gradient, so attention projections whose weights trained
    /// (trained biases, full fine-tuning) pack into one GEMM again.</summary>
    public void Freeze()
    {
        bool trainedBackbone = TrainedBackbone().Any();
        foreach (var p in Network.parameters().Concat(Adapters.parameters())) p.requires_grad = false;
        if (trainedBackbone) foreach (var layer in Network.Encoder.Layers) layer.SelfAttention.PackProjections();
    }

    public void Train(bool on = true)
    {
        Network.train(on);
        Adapters.train(on);
    }

    /// <summary>Head and adapter parameters plus adapter buffers (pruning masks): what a saved model holds. A backbone
    /// weight with an fp32 master is represented by its master.</summary>
    private IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        TrainableParameters().Select(p => (p.Name, MasterOf(p.Name) ?? p.Parameter))
            .Concat(Adapters.named_buffers().Select(b => ("adapters." + b.name, b.buffer)));

    /// <summary>The trained backbone parameters under their state names ("roberta.*"), each as its fp32 master where it
    /// has one; the tensors themselves, not copies.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> TrainedBackboneState() =>
        TrainedBackbone().Select(p => ("roberta." + p.Name, MasterOf("roberta." + p.Name) ?? p.Parameter));

    private Tensor? MasterOf(string stateName) =>
        _masters is not null && stateName.StartsWith("roberta.", StringComparison.Ordinal) ? _masters[stateName["roberta.".Length..]] : null;

    /// <summary>A copy (CPU, fp32) of the adapter and head tensors, keyed "classifier.*" and "adapters.*". Always a
    /// copy: on CPU in fp32, .cpu() and .to() return the parameter itself, which keeps training.</summary>
    public Dictionary<string, Tensor> TrainableState() =>
        StateTensors().ToDictionary(p => p.Name, p => p.Tensor.detach().to(ScalarType.Float32).cpu().clone());

    /// <summary>The tensors <see cref="TrainableState"/> copies, themselves (detached, in their own dtype and device): for
    /// writing them out one at a time while nothing steps, with no copy of them all.</summary>
    public Dictionary<string, Tensor> TrainableStateTensors() => StateTensors().ToDictionary(p => p.Name, p => p.Tensor.detach());

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var tensors = new TensorDictionary(state);
        LoadTrainableState(tensors, source);
    }

    /// <summary>As above, each tensor read from <paramref name="state"/> straight into its parameter where it can be: a
    /// full fine-tuning's zip holds every weight, and no copy of them all then sits beside the model.</summary>
    public void LoadTrainableState(ITensorSource state, string source)
    {
        using var _ = no_grad();
        var expected = StateTensors().ToList();
        var names = state.Names.ToHashSet(StringComparer.Ordinal);
        foreach (var (name, parameter) in expected)
        {
            if (!names.Contains(name)) throw new InvalidDataException($"{source}: missing tensor '{name}'");
            if (state.TryReadInto(name, parameter)) continue;
            using var tensor = state.Read(name)!;
            if (!tensor.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(",", tensor.shape)}], expected [{string.Join(",", parameter.shape)}]");
            parameter.copy_(tensor);
        }
        var unexpected = names.Except(expected.Select(e => e.Name)).ToList();
        if (unexpected.Count > 0) throw new InvalidDataException($"{source}: unexpected tensors {string.Join(", ", unexpected.Take(5))}");
        if (_masters is not null)
            foreach (var (name, parameter) in TrainedBackbone()) parameter.copy_(_masters[name]);
    }

    /// <summary>Folds the adapters into the frozen weights: same outputs, no adapter cost per token.</summary>
    public void Merge()
    {
        if (SharesBackbone) throw new InvalidOperationException("the backbone's weights are shared with other models: merging would change theirs");
        Adapters.Merge();
    }

    public ParameterReport Report() => ParameterReport.Of(this);

    public void Dispose()
    {
        if (_masters is not null) foreach (var master in _masters.Values) master.Dispose();
        Adapters.Dispose();
        Network.Dispose();
    }
}
