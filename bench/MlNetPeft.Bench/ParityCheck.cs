using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// The HF parity fixture (transformers + peft logits, loss, gradient norms) on any device: the unit tests check it on
/// the CPU; this runs it where there is no .NET SDK, e.g. on a GPU machine. fp32 must match to 1e-5; the bf16
/// backbone's error is reported beside it.
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
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var model = Load(dir);
            model.To(device, dtype);
            model.Train(false);
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
            Console.WriteLine($"{device.type} {dtype}: LoRA logits max abs error {logitError:E2}, loss error {lossError:E2}, " +
                $"gradient norms max rel error {gradError:E2}{(dtype == ScalarType.Float32 ? pass ? "  PASS" : "  FAIL" : "  (bf16 backbone: reported)")}");
        }
        return ok ? 0 : 1;
    }

    private static PeftModel Load(string dir)
    {
        var config = RobertaConfig.Load(Path.Combine(dir, "tiny-roberta", "config.json"));
        var model = PeftModel.Create(config, 3, new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0, Targets = ["value", "query"] },
            SafeTensors.Load(Path.Combine(dir, "tiny-roberta", "model.safetensors")), "tiny-roberta");
        model.LoadPeftAdapter(Path.Combine(dir, "tiny-lora", "adapter_model.safetensors"));
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
