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

    /// <summary>Whether training forwards keep only each block's input and run the block again in the backward
    /// (see <see cref="GradientCheckpoint"/>). Forwards that record no graph are unaffected.</summary>
    public bool GradientCheckpointing
    {
        get => encoder.GradientCheckpointing;
        set => encoder.GradientCheckpointing = value;
    }

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

    public bool GradientCheckpointing { get; set; }

    public override Tensor forward(Tensor hidden, Tensor? keep) => Blocks(_layers, hidden, keep);

    /// <summary>The last block runs for &lt;s&gt; alone, and is not checkpointed: its activations are a fraction of a
    /// full block's, and the backward starts with it.</summary>
    public Tensor FirstTokenState(Tensor hidden, Tensor? keep) => _layers[^1].FirstToken(Blocks(_layers.AsSpan(..^1), hidden, keep), keep);

    private Tensor Blocks(ReadOnlySpan<RobertaLayer> blocks, Tensor hidden, Tensor? keep)
    {
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled();
        foreach (var block in blocks)
            hidden = checkpoint ? GradientCheckpoint.Run(h => block.call(h, keep), hidden) : block.call(hidden, keep);
        return hidden;
    }
}
