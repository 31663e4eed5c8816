using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Encoder plus classification (or, with one output, regression) head; state-dict keys match HF.</summary>
internal sealed class RobertaForSequenceClassification : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly RobertaModel roberta;
    private readonly RobertaClassificationHead classifier;

    public RobertaForSequenceClassification(RobertaConfig config, int outputs) : base(nameof(RobertaForSequenceClassification))
    {
        Config = config;
        Outputs = outputs;
        roberta = new RobertaModel(config);
        classifier = new RobertaClassificationHead(config, outputs);
        RegisterComponents();
        classifier.ResetParameters();
    }

    public RobertaConfig Config { get; }
    public int Outputs { get; }
    public RobertaModel Encoder => roberta;
    public RobertaClassificationHead Head => classifier;

    public override Tensor forward(Tensor inputIds, Tensor? attentionMask) => classifier.call(roberta.FirstTokenState(inputIds, attentionMask));
}
