using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Every method's training forward and backward against PyTorch on the tiny fixture model: LoRA against transformers +
/// peft themselves (hf-parity's adapter and expectations, also with checkpointed blocks), and with the factors, head
/// and expectations that the fixtures next to hf-parity hold: Fixtures/reference (bench/reference.py's MSPLoRA, LoRA²
/// and full fine-tuning) and Fixtures/peft-emulated (peft 0.21's AdaLoRA and DoRA code written out). One case builds its
/// model; <see cref="Compare"/> scores the parity inputs, takes the cross-entropy on the parity labels (plus the
/// method's regulariser) and compares logits, loss and every trainable tensor's gradient norm. The unit tests assert
/// these on the CPU; <c>parity</c> runs them on any device.
/// </summary>
internal static class MethodParity
{
    /// <summary>One check: its name, the model (built on a device with its backbone in a precision, in training mode), the
    /// expectation, how our tensor names are spelled there, the gradient tolerance (relative, fp32), and whether the
    /// training forward stacks the factors (null: the method has none to stack).</summary>
    internal sealed record Case(string Name, Func<Device, ScalarType, PeftModel> Build, Func<JsonElement> Expected, Func<string, string>? OurName,
        double Tolerance, bool? Stacks);

    /// <summary>What one model gave against its expectation.</summary>
    internal sealed record Result(double LogitError, double LossError, double GradientError, string WorstGradient, IReadOnlyList<string> Unmatched)
    {
        public bool Passes(double tolerance) => LogitError < 1e-5 && LossError < 1e-6 && GradientError < tolerance && Unmatched.Count == 0;
    }

    /// <summary>The checks, with the hf-parity fixture directory <paramref name="parity"/> (the others are its siblings).
    /// MSPLoRA and LoRA² run stacked (the training forward) or each projection on its own.</summary>
    public static IReadOnlyList<Case> Cases(string parity)
    {
        string reference = Path.Combine(parity, "..", "reference"), emulated = Path.Combine(parity, "..", "peft-emulated");
        var referenceJson = new Lazy<JsonElement>(() => Json(Path.Combine(reference, "expected.json")));
        var emulatedJson = new Lazy<JsonElement>(() => Json(Path.Combine(emulated, "expected.json")));
        var peftJson = new Lazy<JsonElement>(() => PeftLoraExpectations(parity));
        PeftModel FromPeftLora(Device device, ScalarType dtype, bool checkpointed)
        {
            var model = TinyWithPeftLora(parity);
            model.Network.Encoder.GradientCheckpointing = checkpointed; // the blocks replayed in the backward
            return Ready(model, device, dtype, stacked: true);
        }
        PeftModel FromState(Device device, ScalarType dtype, AdapterConfig config, string file, bool stacked)
        {
            var model = Tiny(parity, config);
            model.LoadTrainableState(SafeTensors.Load(Path.Combine(reference, file)), file);
            return Ready(model, device, dtype, stacked);
        }
        PeftModel FromPeft(Device device, ScalarType dtype, AdapterConfig config, string adapter)
        {
            var model = Tiny(parity, config);
            model.LoadPeftAdapter(Path.Combine(emulated, adapter));
            return Ready(model, device, dtype, stacked: true);
        }
        var msplora = new MsploraConfig { Dropout = 0 };
        var loraSquared = new SvdConfig
        {
            Variant = SvdVariant.LoraSquared, InitialRank = 4, InnerRank = 2, Alpha = 8, Dropout = 0,
            OrthogonalityWeight = 0.1, CrossOrthogonalityWeight = 0.1,
        };
        static string PeftLoraName(string key) => PeftLoraImport.FromPeftKey(key.Replace(".default", ""));
        return
        [
            new("lora (transformers + peft)", (d, t) => FromPeftLora(d, t, checkpointed: false), () => peftJson.Value, PeftLoraName, 3e-5, Stacks: true),
            new("lora (transformers + peft) checkpointed", (d, t) => FromPeftLora(d, t, checkpointed: true), () => peftJson.Value, PeftLoraName, 3e-5, Stacks: true),
            new("msplora stacked", (d, t) => FromState(d, t, msplora, "msplora.safetensors", true),
                () => referenceJson.Value.GetProperty("msplora"), null, 3e-5, Stacks: true),
            new("msplora per projection", (d, t) => FromState(d, t, msplora, "msplora.safetensors", false),
                () => referenceJson.Value.GetProperty("msplora"), null, 3e-5, Stacks: false),
            new("lorasquared stacked", (d, t) => FromState(d, t, loraSquared, "lorasquared.safetensors", true),
                () => referenceJson.Value.GetProperty("lorasquared"), null, 3e-5, Stacks: true),
            new("lorasquared per projection", (d, t) => FromState(d, t, loraSquared, "lorasquared.safetensors", false),
                () => referenceJson.Value.GetProperty("lorasquared"), null, 3e-5, Stacks: false),
            // Small gradients summed over every token (the value biases', about 1e-5) round more: measured 3.1e-5.
            new("full", (d, t) => Ready(Tiny(parity, new FullFineTuningConfig()), d, t, stacked: true),
                () => referenceJson.Value.GetProperty("full"), null, 1e-4, Stacks: null),
            new("adalora (peft)", (d, t) => FromPeft(d, t, AdaLoraTraining(emulated), "tiny-adalora-training"),
                () => emulatedJson.Value.GetProperty("adalora_training"), PeftAdaLoraImport.FromPeftKey, 3e-5, Stacks: true),
            new("dora (peft)", (d, t) => FromPeft(d, t, PeftLoraImport.ReadConfig(Path.Combine(emulated, "tiny-dora")) with { Dropout = 0 }, "tiny-dora"),
                () => emulatedJson.Value.GetProperty("dora"), PeftLoraImport.FromPeftKey, 3e-5, Stacks: false), // each row rescaled
        ];
    }

    /// <summary>The unpruned PEFT AdaLoRA fixture's settings, its allocator set as the fixture's (γ 0.5, no warm-up or
    /// final phase, pruning every step).</summary>
    public static SvdConfig AdaLoraTraining(string emulated) =>
        PeftAdaLoraImport.ReadConfig(Path.Combine(emulated, "tiny-adalora-training")) with
        {
            Dropout = 0, OrthogonalityWeight = 0.5, InitialWarmupSteps = 0, FinalSteps = 0, MaskInterval = 1,
        };

    /// <summary>Scores the parity inputs, backpropagates the cross-entropy on the parity labels plus the method's
    /// regulariser (the extra loss of <paramref name="hooks"/>, or of hooks made for a 50-step run), and compares with
    /// <paramref name="expected"/>.</summary>
    public static Result Compare(PeftModel model, JsonElement expected, string parity, Func<string, string>? ourName = null,
        ITrainingHooks? hooks = null)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(parity, "parity.json")));
        var inputs = json.RootElement;
        var device = model.Device;
        var logits = model.Forward(ParityCheck.Ints(inputs.GetProperty("input_ids")).to(device), ParityCheck.Ints(inputs.GetProperty("attention_mask")).to(device));
        var reference = tensor(expected.GetProperty("logits").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray()).view(-1, 3);
        double logitError = logits.detach().cpu().sub(reference).abs().max().item<float>();
        var labels = tensor(inputs.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray()).to(device);
        var loss = nn.functional.cross_entropy(logits, labels);
        hooks ??= model.Config.CreateHooks(model.Adapters, totalSteps: 50);
        if (hooks?.ExtraLoss() is { } extra) loss = loss.add(extra);
        double lossError = Math.Abs(loss.item<float>() - expected.GetProperty("loss").GetDouble());
        loss.backward();

        var norms = model.TrainableParameters().ToDictionary(p => p.Name, p => (double)(p.Parameter.grad?.norm().to(ScalarType.Float32).item<float>() ?? 0f));
        var wanted = expected.GetProperty("grad_norms").EnumerateObject().ToDictionary(e => ourName?.Invoke(e.Name) ?? e.Name, e => e.Value.GetDouble());
        var unmatched = wanted.Keys.Except(norms.Keys).Concat(norms.Keys.Except(wanted.Keys)).ToList();
        // A gradient that is zero in exact arithmetic (attention's key biases: softmax ignores a shift) has no relative error.
        double largest = wanted.Values.DefaultIfEmpty(0).Max();
        var (error, worst) = wanted.Where(w => norms.ContainsKey(w.Key) && w.Value > 1e-6 * largest)
            .Select(w => (Math.Abs(norms[w.Key] - w.Value) / w.Value, w.Key)).DefaultIfEmpty((0, "")).Max();
        return new Result(logitError, lossError, error, worst, unmatched);
    }

    /// <summary>Runs every case on <paramref name="device"/> and prints one line each, in fp32 (which must pass) and with
    /// a bf16 and an fp16 backbone (reported: their rounding, not a bound); true when every fp32 case passes.</summary>
    public static bool RunAll(string parity, Device device)
    {
        bool ok = true;
        foreach (var c in Cases(parity))
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
            {
                using var scope = NewDisposeScope();
                using var model = c.Build(device, dtype);
                var r = Compare(model, c.Expected(), parity, c.OurName);
                bool pass = r.Passes(c.Tolerance);
                if (dtype == ScalarType.Float32) ok &= pass;
                Console.WriteLine($"{device.type} {dtype} {c.Name}: logits max abs error {r.LogitError:E2}, loss error {r.LossError:E2}, " +
                    $"gradient norms max rel error {r.GradientError:E2} ({r.WorstGradient}){(r.Unmatched.Count > 0 ? $", unmatched {string.Join(", ", r.Unmatched.Take(3))}" : "")}" +
                    (dtype != ScalarType.Float32 ? $"  ({dtype} backbone: reported)" : pass ? "  PASS" : "  FAIL"));
            }
        return ok;
    }

    /// <summary>The tiny fixture model with hf-parity's PEFT LoRA adapter (r 4, alpha 8, query and value) and head;
    /// <paramref name="dropout"/> in the backbone and the adapters (the fixture has none).</summary>
    internal static PeftModel TinyWithPeftLora(string parity, double dropout = 0)
    {
        var model = Tiny(parity, new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, Targets = ["value", "query"] }, dropout);
        model.LoadPeftAdapter(Path.Combine(parity, "tiny-lora"));
        return model;
    }

    private static PeftModel Tiny(string parity, AdapterConfig adapters, double backboneDropout = 0) =>
        PeftModel.Create(RobertaConfig.Load(Path.Combine(parity, "tiny-roberta", "config.json")) with
            {
                HiddenDropoutProb = backboneDropout, AttentionProbsDropoutProb = backboneDropout,
            }, 3, adapters, SafeTensors.Load(Path.Combine(parity, "tiny-roberta", "model.safetensors")), "tiny-roberta", loadHead: true);

    /// <summary>On the device, the backbone in <paramref name="dtype"/> (packing query|key|value, as training does), in
    /// training mode, stacking factors or not.</summary>
    private static PeftModel Ready(PeftModel model, Device device, ScalarType dtype, bool stacked)
    {
        model.To(device, dtype);
        model.Train(true);
        model.Adapters.StackingEnabled = stacked;
        return model;
    }

    /// <summary>hf-parity's LoRA expectations (made by transformers + peft) in the shape of the other fixtures' cases.</summary>
    private static JsonElement PeftLoraExpectations(string parity)
    {
        var made = Json(Path.Combine(parity, "parity.json"));
        return JsonSerializer.SerializeToElement(new
        {
            logits = made.GetProperty("lora_logits"), loss = made.GetProperty("lora_loss"), grad_norms = made.GetProperty("grad_norms"),
        });
    }

    private static JsonElement Json(string file)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(file));
        return document.RootElement.Clone();
    }
}
