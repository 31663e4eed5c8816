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
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask) =>
        encoder.call(embeddings.call(inputIds), Keep(attentionMask));

    /// <summary>
    /// The last layer's &lt;s&gt; state, [batch, 1, hidden]: equal to <c>forward(...)[:, :1]</c>, but the last block
    /// runs its query, attention output and feed-forward for position 0 only, since a sequence classifier reads
    /// nothing else (a sixth of the encoder's work on a 6-layer model, in training and inference).
    /// </summary>
    public Tensor FirstTokenState(Tensor inputIds, Tensor? attentionMask) =>
        encoder.FirstTokenState(embeddings.call(inputIds), Keep(attentionMask));

    private static Tensor? Keep(Tensor? attentionMask) => attentionMask?.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);
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

    public Tensor FirstTokenState(Tensor hidden, Tensor? keep)
    {
        foreach (var block in _layers.AsSpan(..^1)) hidden = block.call(hidden, keep);
        return _layers[^1].FirstToken(hidden, keep);
    }
}
