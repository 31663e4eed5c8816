using System.Text.Json;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// The parity checks on any device: the unit tests run them on the CPU; this runs them where there is no .NET SDK,
/// e.g. on a GPU machine. First every method's logits, loss and gradients against PyTorch (<see cref="MethodParity"/>:
/// LoRA against transformers + peft, also with gradient checkpointing, whose blocks replay in the device's backward),
/// fp32 asserted and bf16 and fp16 backbones' errors reported beside it. Then, with dropout everywhere, every checkpointed
/// block's replay must compute what its first run did (the same dropout masks: on CUDA, the reseeded generator).
/// </summary>
internal static class ParityCheck
{
    public static int Run(BenchArgs a)
    {
        var dir = FixtureDirectory(a);
        var device = a.Text("device", "auto") == "cpu" || !cuda.is_available() ? CPU : CUDA;
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "parity.json")));
        var parity = json.RootElement;
        var ids = Ints(parity.GetProperty("input_ids")).to(device);
        var mask = Ints(parity.GetProperty("attention_mask")).to(device);
        var labels = tensor(parity.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray()).to(device);

        bool ok = MethodParity.RunAll(dir, device);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
            ok &= ReplaysDrawTheSameMasks(dir, device, dtype, ids, mask, labels);
        return ok ? 0 : 1;
    }

    /// <summary>A training step with dropout everywhere and checkpointed blocks: each replay equals its first run (to
    /// rounding, 1e-3 of the output's largest value: the replay may add the adapters' updates by another kernel; other
    /// masks differ by 2e-2 here).</summary>
    private static bool ReplaysDrawTheSameMasks(string dir, Device device, ScalarType dtype, Tensor ids, Tensor mask, Tensor labels)
    {
        using var model = MethodParity.TinyWithPeftLora(dir, dropout: 0.1);
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
        // bf16's (and fp16's) rounding steps are near that tolerance (a kernel that rounds once differently could fail it): reported.
        Console.WriteLine($"{device.type} {dtype} with dropout: {count} checkpointed blocks replayed, largest difference from " +
            $"their first runs {difference:E2} of the output{(dtype != ScalarType.Float32 ? $"  ({dtype}: reported)" : pass ? "  PASS" : "  FAIL")}");
        return pass || dtype != ScalarType.Float32;
    }

    /// <summary>The HF parity fixture (--fixture, or the tests' copy).</summary>
    internal static string FixtureDirectory(BenchArgs a) =>
        a.Text("fixture", Path.Combine(BenchArgs.RepositoryRoot(), "test", "MlNetPeft.Tests", "Fixtures", "hf-parity"));

    internal static Tensor Ints(JsonElement rows) =>
        tensor(rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(), Shape(rows));

    private static long[] Shape(JsonElement rows) => [rows.GetArrayLength(), rows[0].GetArrayLength()];
}
