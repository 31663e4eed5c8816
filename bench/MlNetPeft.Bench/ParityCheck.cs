using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// The HF parity fixture (transformers + peft logits, loss, gradient norms) on any device: the unit tests check it on
/// the CPU; this runs it where there is no .NET SDK, e.g. on a GPU machine. fp32 must match to 1e-5, also with
/// gradient checkpointing (the blocks replayed in the device's backward); the bf16 backbone's error is reported
/// beside it. Then, with dropout everywhere, every checkpointed block's replay must compute what its first run did
/// (the same dropout masks: on CUDA, the reseeded generator). Last, every method's logits, loss and gradients against
/// PyTorch (<see cref="MethodParity"/>).
/// </summary>
internal static class ParityCheck
{
    public static int Run(BenchArgs a)
    {
        var dir = FixtureDirectory(a);
        var device = a.Text("device", "auto") == "cpu" || !cuda.is_available() ? CPU : CUDA;
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "parity.json")));
        var expected = json.RootElement;
        var ids = Ints(expected.GetProperty("input_ids")).to(device);
        var mask = Ints(expected.GetProperty("attention_mask")).to(device);
        var labels = tensor(expected.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray()).to(device);
        var reference = Floats(expected.GetProperty("lora_logits"));

        bool ok = true;
        foreach (var (dtype, checkpointed) in new[] { (ScalarType.Float32, false), (ScalarType.BFloat16, false), (ScalarType.Float32, true) })
        {
            using var model = Load(dir);
            model.To(device, dtype);
            // The fixture has no dropout: training mode computes what evaluation does, and lets checkpointing run.
            model.Train(checkpointed);
            model.Network.Encoder.GradientCheckpointing = checkpointed;
            var logits = model.Forward(ids, mask);
            double logitError = logits.detach().cpu().sub(reference).abs().max().item<float>();
            var loss = nn.functional.cross_entropy(logits, labels);
            double lossError = Math.Abs(loss.item<float>() - expected.GetProperty("lora_loss").GetDouble());
            loss.backward();
            var norms = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.norm().item<float>());
            double gradError = expected.GetProperty("grad_norms").EnumerateObject()
                .Max(g => Math.Abs(norms[PeftLoraImport.FromPeftKey(g.Name)] - g.Value.GetDouble()) / g.Value.GetDouble());
            bool pass = dtype != ScalarType.Float32 || (logitError < 1e-5 && lossError < 1e-5 && gradError < 1e-4);
            ok &= pass;
            Console.WriteLine($"{device.type} {dtype}{(checkpointed ? " checkpointed" : "")}: LoRA logits max abs error {logitError:E2}, loss error {lossError:E2}, " +
                $"gradient norms max rel error {gradError:E2}{(dtype == ScalarType.Float32 ? pass ? "  PASS" : "  FAIL" : "  (bf16 backbone: reported)")}");
        }
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            ok &= ReplaysDrawTheSameMasks(dir, device, dtype, ids, mask, labels);
        ok &= MethodParity.RunAll(dir, device);
        return ok ? 0 : 1;
    }

    /// <summary>A training step with dropout everywhere and checkpointed blocks: each replay equals its first run (to
    /// rounding, 1e-3 of the output's largest value: the replay may add the adapters' updates by another kernel; other
    /// masks differ by 2e-2 here).</summary>
    private static bool ReplaysDrawTheSameMasks(string dir, Device device, ScalarType dtype, Tensor ids, Tensor mask, Tensor labels)
    {
        using var model = Load(dir, dropout: 0.1);
        model.To(device, dtype);
        model.Train();
        model.Network.Encoder.GradientCheckpointing = true;
        GradientCheckpoint.ResetVerifiedReplays();
        GradientCheckpoint.VerifyReplays = true;
        try
        {
            using var scope = NewDisposeScope();
            nn.functional.cross_entropy(model.Forward(ids, mask), labels).backward();
            GradientCheckpoint.ThrowIfReplayFailed();
        }
        finally
        {
            GradientCheckpoint.VerifyReplays = false;
        }
        var (count, difference) = GradientCheckpoint.VerifiedReplays;
        bool pass = count == model.Network.Config.NumHiddenLayers - 1 && difference < 1e-3;
        // bf16's rounding steps are near that tolerance (a kernel that rounds once differently could fail it): reported.
        Console.WriteLine($"{device.type} {dtype} with dropout: {count} checkpointed blocks replayed, largest difference from " +
            $"their first runs {difference:E2} of the output{(dtype != ScalarType.Float32 ? "  (bf16: reported)" : pass ? "  PASS" : "  FAIL")}");
        return pass || dtype != ScalarType.Float32;
    }

    private static PeftModel Load(string dir, double dropout = 0)
    {
        var config = RobertaConfig.Load(Path.Combine(dir, "tiny-roberta", "config.json")) with
        {
            HiddenDropoutProb = dropout, AttentionProbsDropoutProb = dropout,
        };
        var model = PeftModel.Create(config, 3, new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, Targets = ["value", "query"] },
            SafeTensors.Load(Path.Combine(dir, "tiny-roberta", "model.safetensors")), "tiny-roberta");
        model.LoadPeftAdapter(Path.Combine(dir, "tiny-lora"));
        return model;
    }

    /// <summary>The HF parity fixture (--fixture, or the tests' copy).</summary>
    internal static string FixtureDirectory(BenchArgs a) =>
        a.Text("fixture", Path.Combine(BenchArgs.RepositoryRoot(), "test", "MlNetPeft.Tests", "Fixtures", "hf-parity"));

    internal static Tensor Ints(JsonElement rows) =>
        tensor(rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(), Shape(rows));

    private static Tensor Floats(JsonElement rows) =>
        tensor(rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray(), Shape(rows));

    private static long[] Shape(JsonElement rows) => [rows.GetArrayLength(), rows[0].GetArrayLength()];
}
