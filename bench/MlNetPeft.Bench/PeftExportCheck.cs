using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Writes each method's model for an engine other than ours to read: the parity fixture's backbone with seeded random
/// adapters (one SVD singular value pruned; full fine-tuning: a perturbed backbone) as a PEFT LoRA adapter
/// (OUT/method/adapter/; a LoRA with trained biases, "lorabias", with them under PEFT's names; AdaLoRA also as a PEFT AdaLoRA adapter, OUT/adalora/adalora-adapter/) and as a plain
/// checkpoint with the adapters merged (OUT/method/merged/model.safetensors), with
/// its logits on the fixture's inputs in OUT/method/logits.json. <c>bench/check_peft_export.py OUT</c> loads both with
/// the PyTorch reference and compares.
/// </summary>
internal static class PeftExportCheck
{
    public static int Run(BenchArgs a)
    {
        var fixture = ParityCheck.FixtureDirectory(a);
        var output = a.Text("out", Path.Combine(Path.GetTempPath(), "peft-export"));
        using var parity = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixture, "parity.json")));
        var ids = ParityCheck.Ints(parity.RootElement.GetProperty("input_ids"));
        var mask = ParityCheck.Ints(parity.RootElement.GetProperty("attention_mask"));
        var labels = tensor(parity.RootElement.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        var config = RobertaConfig.Load(Path.Combine(fixture, "tiny-roberta", "config.json"));
        foreach (var method in a.List("method", "lora,msplora,lorasquared,adalora,full"))
        {
            using var scope = NewDisposeScope();
            var adapters = SpeedBenchmark.MethodConfig(method) with { Dropout = 0 };
            if (a.Targets() is { } targets && !adapters.TrainsBackbone) adapters = adapters with { Targets = targets };
            if (a.Text("layers") is not null && adapters is LoraConfig lora) // PEFT's layers_to_transform
                adapters = lora with { Layers = a.List("layers", "").Select(int.Parse).ToArray() };
            if (adapters is LoraConfig withPatterns) // PEFT's rank_pattern and alpha_pattern
                adapters = withPatterns with
                {
                    RankPattern = Pattern(a.Text("rank-pattern"), int.Parse), AlphaPattern = Pattern(a.Text("alpha-pattern"), double.Parse),
                };
            using var model = PeftModel.Create(config, 3, adapters,
                SafeTensors.Load(Path.Combine(fixture, "tiny-roberta", "model.safetensors")), "tiny-roberta", loadHead: true);
            model.Train(false);
            MoveAsIfTrained(model);
            var dir = Path.Combine(output, method);
            if (!model.Config.TrainsBackbone) PeftLoraExport.Save(model, Path.Combine(dir, "adapter"), Path.Combine(fixture, "tiny-roberta"));
            if (model.Config is SvdConfig { Variant: SvdVariant.AdaLora })
                PeftAdaLoraExport.Save(model, Path.Combine(dir, "adalora-adapter"), Path.Combine(fixture, "tiny-roberta"), trainingSteps: null);
            Directory.CreateDirectory(Path.Combine(dir, "merged"));
            File.WriteAllBytes(Path.Combine(dir, "merged", "model.safetensors"), MergedCheckpoint.Save(model));
            using (no_grad())
            {
                var logits = model.Forward(ids, mask);
                var rows = Enumerable.Range(0, (int)logits.shape[0]).Select(r => logits[r].data<float>().ToArray()).ToArray();
                File.WriteAllText(Path.Combine(dir, "logits.json"), JsonSerializer.Serialize(rows));
            }
            if (model.Config is LoraConfig) WriteGradients(model, ids, mask, labels, Path.Combine(dir, "gradients.safetensors"));
            Console.WriteLine($"{method}: {dir}");
        }
        return 0;
    }

    /// <summary>"key=value;key=value" (the keys are regular expressions, so ';' separates them), or null.</summary>
    private static Dictionary<string, T>? Pattern<T>(string? text, Func<string, T> parse) =>
        text?.Split(';', StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('=', 2))
            .ToDictionary(kv => kv[0], kv => parse(kv[1]));

    /// <summary>A LoRA (or DoRA) model's exported pairs (and magnitudes, and trained biases) are its own parameters: their gradients of the fixture's loss (through the
    /// training forward: stacked query/key/value factors, the other targets' own updates), under the PEFT keys, for
    /// check_peft_export.py to compare with PyTorch's autograd.</summary>
    private static void WriteGradients(PeftModel model, Tensor ids, Tensor mask, Tensor labels, string file)
    {
        nn.functional.cross_entropy(model.Forward(ids, mask), labels).backward();
        var gradients = new Dictionary<string, Tensor>();
        foreach (var (path, _, _, linear) in model.Adapters.Wrapped)
        {
            var pair = (LowRankUpdate)linear.Updates.Single();
            gradients[$"base_model.model.{path}.lora_A.weight"] = pair.A.grad!.detach().clone();
            gradients[$"base_model.model.{path}.lora_B.weight"] = pair.B.grad!.detach().clone();
            if (linear.Magnitude is { } magnitude)
                gradients[$"base_model.model.{path}.lora_magnitude_vector"] = magnitude.Weight.grad!.detach().clone();
        }
        foreach (var (name, bias) in model.TrainedBackbone()) gradients[$"base_model.model.roberta.{name}"] = bias.grad!.detach().clone();
        File.WriteAllBytes(file, SafeTensors.Save(gradients));
    }

    /// <summary>Moves a model's trainable weights as training would (seeded): random adapters (DoRA's magnitudes
    /// scaled by random factors around 1), SVD forms with a pruned singular value, or for full fine-tuning a perturbed
    /// backbone; so that an export has something to get wrong.</summary>
    internal static void MoveAsIfTrained(PeftModel model)
    {
        using var _ = no_grad();
        manual_seed(21);
        // SVD-form updates multiply three to five factors: larger values for an effect of the same size.
        double scale = model.Config is SvdConfig ? 1.0 : 0.2;
        foreach (var (name, p) in model.Adapters.named_parameters())
            if (name.EndsWith("_magnitude.weight", StringComparison.Ordinal)) p.mul_(randn_like(p).exp()); // DoRA's row lengths
            else p.copy_(randn_like(p).mul(scale));
        foreach (var (_, mask) in model.Adapters.named_buffers().Where(b => b.name.EndsWith("rank_mask"))) mask[1].fill_(0);
        foreach (var p in model.TrainedBackboneParameters()) p.add_(randn_like(p).mul(0.02)); // full fine-tuning's backbone, trained biases
    }
}
