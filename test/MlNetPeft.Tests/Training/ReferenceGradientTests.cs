using MlNetPeft.Bench;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

/// <summary>
/// Every method's training forward and backward against PyTorch on the tiny fixture model (the cases of
/// <see cref="MethodParity"/>, which <c>bench parity</c> also runs on a GPU): logits within 1e-5, loss (with the
/// method's regulariser) within 1e-6 and every trainable tensor's gradient norm within the case's relative tolerance.
/// <list type="bullet">
/// <item>Fixtures/hf-parity, made by transformers + peft: the PEFT LoRA adapter, also with gradient checkpointing.</item>
/// <item>Fixtures/reference, made with bench/reference.py: MSPLoRA wired as the authors' code (a shared pair's gradient
/// summed over the layers that use it), LoRA² as the authors' SVDLinear with the paper's regulariser (cross term
/// included, one singular value pruned), full fine-tuning from the fixture checkpoint (every backbone weight, packed
/// query|key|value included).</item>
/// <item>Fixtures/peft-emulated, made by following peft 0.21's code: AdaLoRA with its orthogonality regulariser, DoRA as
/// its DoraLinearLayer, both imported from PEFT adapter files.</item>
/// </list>
/// </summary>
[TestClass]
public sealed class ReferenceGradientTests
{
    public static IEnumerable<object[]> Cases => MethodParity.Cases(TestData.Fixtures).Select(c => new object[] { c.Name });

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesPyTorch(string name)
    {
        var c = MethodParity.Cases(TestData.Fixtures).Single(c => c.Name == name);
        using var model = c.Build(CPU, ScalarType.Float32);
        if (c.Stacks is { } stacks)
        {
            Assert.AreEqual(stacks, model.Adapters.StackFactors(ScalarType.Float32), "whether the training forward stacks the factors");
            model.Adapters.ReleaseStacks();
        }
        var r = MethodParity.Compare(model, c.Expected(), TestData.Fixtures, c.OurName);
        Assert.IsEmpty(r.Unmatched, "every trainable tensor has a reference gradient, and every reference gradient a tensor");
        Assert.IsLessThan(1e-5, r.LogitError, "logits");
        Assert.IsLessThan(1e-6, r.LossError, "loss");
        Assert.IsLessThan(c.Tolerance, r.GradientError, $"gradient norm of {r.WorstGradient}");
    }
}
