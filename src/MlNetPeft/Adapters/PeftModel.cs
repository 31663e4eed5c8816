using MlNetPeft.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A RoBERTa classifier with a frozen backbone, adapters attached by an <see cref="AdapterConfig"/>, and a
/// trainable head. What is trained and saved is <see cref="TrainableState"/>: adapters + head.
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

    /// <summary>Builds the network from a checkpoint's tensors, freezes it and attaches adapters.</summary>
    public static PeftModel Create(RobertaConfig config, int outputs, AdapterConfig adapters,
        IReadOnlyDictionary<string, Tensor> backboneWeights, string source, bool loadHead = false)
    {
        adapters.Validate(config.NumHiddenLayers);
        var network = new RobertaForSequenceClassification(config, outputs);
        CheckpointLoader.Load(network, backboneWeights, source, loadHead);
        foreach (var p in network.parameters()) p.requires_grad = false;
        var set = adapters.Attach(network.Encoder);
        foreach (var p in network.Head.parameters()) p.requires_grad = true;
        if (adapters.TrainsBackbone) foreach (var p in network.Encoder.parameters()) p.requires_grad = true;
        return new PeftModel(network, set, adapters);
    }

    /// <summary>Head and adapter (or, for full fine-tuning, backbone) parameters, named as in <see cref="TrainableState"/>.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters() =>
        Network.Head.named_parameters().Select(p => ("classifier." + p.name, p.parameter))
            .Concat(Config.TrainsBackbone
                ? Network.Encoder.named_parameters().Select(p => ("roberta." + p.name, p.parameter))
                : Adapters.named_parameters().Select(p => ("adapters." + p.name, p.parameter)));

    public IEnumerable<Parameter> HeadParameters() => Network.Head.parameters();

    /// <summary>What trains besides the head: the adapters, or the backbone when fine-tuning fully.</summary>
    public IEnumerable<Parameter> BodyParameters() => Config.TrainsBackbone ? Network.Encoder.parameters() : Adapters.parameters();

    public IEnumerable<Parameter> AdapterParameters() => Adapters.parameters();

    public long TrainableCount => TrainableParameters().Sum(p => p.Parameter.numel());

    /// <summary>Moves to a device; the frozen backbone may be stored in bf16 while trainable weights stay fp32
    /// (manual mixed precision: TorchSharp has no autocast).</summary>
    public void To(Device device, ScalarType backboneDType)
    {
        if (device.type == DeviceType.CPU) Training.CpuAllocator.KeepFreedMemory();
        Network.to(device);
        Adapters.to(device);
        // Adapters are not submodules of the encoder, so this converts only the frozen weights. A backbone that
        // trains keeps fp32 weights (bf16 master weights would lose the updates).
        if (Config.TrainsBackbone) backboneDType = ScalarType.Float32;
        if (backboneDType != ScalarType.Float32) Network.Encoder.to(backboneDType);
        foreach (var layer in Network.Encoder.Layers) layer.SelfAttention.PackProjections();
        Device = device;
        BackboneDType = backboneDType;
    }

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

    public void Train(bool on = true)
    {
        Network.train(on);
        Adapters.train(on);
    }

    /// <summary>Head and adapter parameters plus adapter buffers (pruning masks): what a saved model holds.</summary>
    private IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        TrainableParameters().Select(p => (p.Name, (Tensor)p.Parameter))
            .Concat(Adapters.named_buffers().Select(b => ("adapters." + b.name, b.buffer)));

    /// <summary>A copy (CPU, fp32) of the adapter and head tensors, keyed "classifier.*" and "adapters.*". Always a
    /// copy: on CPU in fp32, .cpu() and .to() return the parameter itself, which keeps training.</summary>
    public Dictionary<string, Tensor> TrainableState() =>
        StateTensors().ToDictionary(p => p.Name, p => p.Tensor.detach().to(ScalarType.Float32).cpu().clone());

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var _ = no_grad();
        var expected = StateTensors().ToList();
        foreach (var (name, parameter) in expected)
        {
            if (!state.TryGetValue(name, out var tensor)) throw new InvalidDataException($"{source}: missing tensor '{name}'");
            if (!tensor.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(",", tensor.shape)}], expected [{string.Join(",", parameter.shape)}]");
            parameter.copy_(tensor);
        }
        var unexpected = state.Keys.Except(expected.Select(e => e.Name)).ToList();
        if (unexpected.Count > 0) throw new InvalidDataException($"{source}: unexpected tensors {string.Join(", ", unexpected.Take(5))}");
    }

    /// <summary>Folds the adapters into the frozen weights: same outputs, no adapter cost per token.</summary>
    public void Merge() => Adapters.Merge();

    public ParameterReport Report() => ParameterReport.Of(this);

    public void Dispose()
    {
        Adapters.Dispose();
        Network.Dispose();
    }
}
