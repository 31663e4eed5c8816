using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>RoBERTa encoder without pooler (as HF builds it for sequence classification).</summary>
internal sealed class RobertaModel : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly RobertaEmbeddings embeddings;
    private readonly RobertaEncoder encoder;

    public RobertaModel(RobertaConfig c) : base(nameof(RobertaModel))
    {
        embeddings = new RobertaEmbeddings(c);
        encoder = new RobertaEncoder(c);
        RegisterComponents();
    }

    public IReadOnlyList<RobertaLayer> Layers => encoder.Layers;

    /// <param name="inputIds">[batch, seq] token ids.</param>
    /// <param name="attentionMask">[batch, seq], 1 for real tokens and 0 for padding; null when the batch has
    /// no padding (the batcher knows, so no device sync is spent finding out; SDPA then runs unmasked).</param>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask)
    {
        var hidden = embeddings.call(inputIds);
        var keep = attentionMask?.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);
        return encoder.call(hidden, keep);
    }
}

internal sealed class RobertaEncoder : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly ModuleList<RobertaLayer> layer;
    private readonly RobertaLayer[] _layers;

    public RobertaEncoder(RobertaConfig c) : base(nameof(RobertaEncoder))
    {
        layer = nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new RobertaLayer(c)).ToArray());
        _layers = layer.ToArray();
        RegisterComponents();
    }

    public IReadOnlyList<RobertaLayer> Layers => _layers;

    public override Tensor forward(Tensor hidden, Tensor? keep)
    {
        foreach (var block in _layers) hidden = block.call(hidden, keep);
        return hidden;
    }
}
