using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

// Field names are the HF checkpoint keys (roberta.embeddings.word_embeddings.weight, ...).
internal sealed class RobertaEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly Embedding word_embeddings;
    private readonly Embedding position_embeddings;
    private readonly Embedding token_type_embeddings;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;
    private readonly long _padId;

    public RobertaEmbeddings(RobertaConfig c) : base(nameof(RobertaEmbeddings))
    {
        word_embeddings = RandomInit.Embedding(c.VocabSize, c.HiddenSize, c.PadTokenId);
        position_embeddings = RandomInit.Embedding(c.MaxPositionEmbeddings, c.HiddenSize, c.PadTokenId);
        token_type_embeddings = RandomInit.Embedding(c.TypeVocabSize, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        dropout = new FastDropout(c.HiddenDropoutProb);
        _padId = c.PadTokenId;
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        // As HF create_position_ids_from_input_ids: positions count real tokens from padding_idx + 1,
        // and padding tokens get padding_idx.
        var mask = inputIds.ne(_padId).to(ScalarType.Int64);
        var positions = mask.cumsum(1).mul(mask).add(_padId);
        var x = word_embeddings.call(inputIds)
            .add(position_embeddings.call(positions))
            .add(token_type_embeddings.weight![0]); // token_type_ids are all zero for RoBERTa
        return dropout.call(LayerNorm.call(x));
    }
}
