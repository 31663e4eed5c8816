using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetPeft.Tests.MlNet;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

[TestClass]
public sealed class ComputeSelectionTests
{
    [TestMethod]
    [DataRow("flags\t\t: fpu vme avx avx2 fma", true)]            // x86 with AVX2 only
    [DataRow("flags\t\t: fpu avx2 avx512f avx512_bf16", false)]  // AVX-512 with bf16 (this project's earlier CI machines)
    [DataRow("flags\t\t: fpu avx2 amx_bf16 amx_tile", false)]    // Intel AMX
    [DataRow("Features\t: fp asimd bf16 i8mm", false)]           // Arm
    public void BfloatOnACpuWithoutNativeBfloatIsWarnedAbout(string flags, bool slow)
    {
        var warning = ComputeSelection.SlowBfloat16Warning(CPU, ScalarType.BFloat16, flags);
        Assert.AreEqual(slow, warning is not null, warning);
        if (slow) StringAssert.Contains(warning, "Precision = Auto or Float32");
        Assert.IsNull(ComputeSelection.SlowBfloat16Warning(CPU, ScalarType.Float32, flags), "fp32 is never slow");
        Assert.IsNull(ComputeSelection.SlowBfloat16Warning(new Device(TorchSharp.DeviceType.CUDA, 0), ScalarType.BFloat16, flags), "CUDA is not the CPU");
    }

    [TestMethod]
    public void UnknownCpuFlagsWarnOfNothing() =>
        Assert.IsNull(ComputeSelection.SlowBfloat16Warning(CPU, ScalarType.BFloat16, null));

    /// <summary>A bf16 trainer on this machine's CPU warns in ML.NET's log exactly when this CPU's flags lack native bf16.</summary>
    [TestMethod]
    public void TheTrainerWarnsThroughMlNetsLog()
    {
        if (OperatingSystem.IsLinux()) Assert.IsNotNull(ComputeSelection.CpuFlags(), "/proc/cpuinfo has the CPU's flags");
        var ml = new MLContext(seed: 1);
        var warnings = PeftTrainerFixture.LogMessages(ml, ChannelMessageKind.Warning);
        var options = PeftTrainerFixture.Bfloat16(PeftTrainerFixture.Lora(1));
        options.Device = ComputeDevice.Cpu;
        PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(16, seed: 3)), options);
        var expected = ComputeSelection.SlowBfloat16Warning(CPU, ScalarType.BFloat16, ComputeSelection.CpuFlags());
        Assert.AreEqual(expected is not null, warnings.Any(w => w.Contains("without native bf16")), string.Join("; ", warnings));
    }
}
