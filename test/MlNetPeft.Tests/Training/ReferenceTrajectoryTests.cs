using System.Text.Json;
using MlNetPeft.Bench;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

/// <summary>
/// Six optimizer steps of our training step against bench/reference.py's own (Fixtures/reference, "trajectory" in
/// expected.json, made by make.py): the same starting weights (MethodParity's MSPLoRA and full fine-tuning cases), the
/// same three padded batches taken twice in order, the reference's <c>glue</c> recipe (AdamW, head at half the rate,
/// weight decay 0.1, linear warm-up and decay, clipping at 1.0, which every step of the fixture hits). Gradients alone
/// (<see cref="ReferenceGradientTests"/>) leave out what a step does with them: the parameter groups, the schedule's
/// rounding, decoupled weight decay, clipping; a slip in any of them moves the losses of later steps and how far each
/// tensor travels.
/// </summary>
[TestClass]
public sealed class ReferenceTrajectoryTests
{
    [TestMethod]
    [DataRow("msplora", "msplora stacked")]
    [DataRow("full", "full")]
    public void StepsAsThePyTorchReferenceSteps(string method, string parityCase)
    {
        var made = Expected();
        var expected = made.GetProperty(method);
        using var model = MethodParity.Cases(TestData.Fixtures).Single(c => c.Name == parityCase).Build(CPU, ScalarType.Float32);
        var settings = new TrainingSettings
        {
            LearningRate = expected.GetProperty("lr").GetDouble(), HeadLearningRateRatio = made.GetProperty("head_lr_ratio").GetDouble(),
            WeightDecay = made.GetProperty("weight_decay").GetDouble(), WarmupRatio = made.GetProperty("warmup_ratio").GetDouble(),
            GradientClipNorm = made.GetProperty("clip_norm").GetDouble(),
        };
        int steps = made.GetProperty("steps").GetInt32();
        var start = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
        var batches = expected.GetProperty("batches").EnumerateArray().Select(ToBatch).ToList();
        var losses = expected.GetProperty("losses").EnumerateArray().Select(v => v.GetDouble()).ToList();

        using (var stepper = new TrainingStepper(model, settings, TaskKind.Classification, steps))
            for (int step = 0; step < steps; step++)
            {
                using var scope = NewDisposeScope();
                double loss = stepper.Run(batches[step % batches.Count]).item<float>();
                Assert.AreEqual(losses[step], loss, 1e-5 * losses[step], $"loss of step {step + 1}");
            }

        var moved = expected.GetProperty("moved").EnumerateObject().ToDictionary(e => e.Name, e => e.Value.GetDouble());
        CollectionAssert.AreEquivalent(moved.Keys.ToList(), start.Keys.ToList(), "the reference trains the same tensors");
        // Attention's key biases have a zero gradient in exact arithmetic (softmax ignores a shift): they move by decay
        // and rounding alone, a few 1e-7, and Adam turns their rounding into steps of its own. They must stay that still.
        double still = 1e-4 * moved.Values.Max();
        foreach (var (name, parameter) in model.TrainableParameters())
        {
            double distance = parameter.detach().sub(start[name]).norm().item<float>();
            if (moved[name] < still) Assert.IsLessThan(still, distance, $"{name} stays where it started, as in the reference");
            else Assert.AreEqual(moved[name], distance, 1e-5 * moved[name], $"how far {name} moved in {steps} steps");
        }
        foreach (var t in start.Values) t.Dispose();
        foreach (var b in batches) { b.Ids.Dispose(); b.Mask?.Dispose(); b.Labels.Dispose(); }
    }

    private static Batch ToBatch(JsonElement b)
    {
        long[][] Rows(string name) => b.GetProperty(name).EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        var ids = Rows("input_ids");
        var mask = Rows("attention_mask");
        var labels = b.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray();
        int width = ids[0].Length;
        return new Batch(tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, width]), tensor(mask.SelectMany(r => r).ToArray(), [ids.Length, width]),
            tensor(labels), ids.Length);
    }

    private static JsonElement Expected()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.Fixtures, "..", "reference", "expected.json")));
        return document.RootElement.GetProperty("trajectory").Clone();
    }
}
