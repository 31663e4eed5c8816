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
    [DataRow("flags\t\t: fpu vme avx avx2 fma", true, true)]                       // x86 with AVX2 only
    [DataRow("flags\t\t: fpu avx2 avx512f avx512_bf16", false, true)]             // AVX-512 with bf16 (this project's CI machines)
    [DataRow("flags\t\t: fpu avx2 avx512_bf16 avx512_fp16", false, false)]        // AVX-512 with bf16 and fp16 (Sapphire Rapids)
    [DataRow("flags\t\t: fpu avx2 amx_bf16 amx_fp16 amx_tile", false, false)]     // Intel AMX
    [DataRow("Features\t: fp asimd asimdhp bf16 i8mm", false, false)]            // Arm
    public void LowPrecisionOnACpuWithoutNativeInstructionsIsWarnedAbout(string flags, bool slowBf16, bool slowFp16)
    {
        var bf16 = ComputeSelection.SlowCpuPrecisionWarning(CPU, ScalarType.BFloat16, flags);
        var fp16 = ComputeSelection.SlowCpuPrecisionWarning(CPU, ScalarType.Float16, flags);
        Assert.AreEqual(slowBf16, bf16 is not null, bf16);
        Assert.AreEqual(slowFp16, fp16 is not null, fp16);
        if (slowBf16) StringAssert.Contains(bf16, "without native bf16 instructions (no avx512_bf16, amx_bf16 or bf16");
        if (slowFp16) StringAssert.Contains(fp16, "without native fp16 instructions (no avx512_fp16, amx_fp16 or asimdhp");
        foreach (var warning in new[] { bf16, fp16 }.OfType<string>()) StringAssert.Contains(warning, "Precision = Auto or Float32");
        Assert.IsNull(ComputeSelection.SlowCpuPrecisionWarning(CPU, ScalarType.Float32, flags), "fp32 is never slow");
        Assert.IsNull(ComputeSelection.SlowCpuPrecisionWarning(new Device(TorchSharp.DeviceType.CUDA, 0), ScalarType.BFloat16, flags), "CUDA is not the CPU");
    }

    [TestMethod]
    public void UnknownCpuFlagsWarnOfNothing() =>
        Assert.IsNull(ComputeSelection.SlowCpuPrecisionWarning(CPU, ScalarType.BFloat16, null));

    /// <summary>Auto on CUDA: bf16 where the GPU has bf16 tensor cores (8.0 and newer), fp16 on 7.x (V100, T4, RTX
    /// 20xx), whose bf16 is emulated, fp32 on older GPUs; bf16 when the capability is unknown. Explicit choices stand.</summary>
    [TestMethod]
    [DataRow(9, 0, ScalarType.BFloat16)]  // H100
    [DataRow(8, 0, ScalarType.BFloat16)]  // A100
    [DataRow(8, 6, ScalarType.BFloat16)]  // RTX 30xx, A10
    [DataRow(7, 5, ScalarType.Float16)]   // T4, RTX 20xx
    [DataRow(7, 0, ScalarType.Float16)]   // V100
    [DataRow(6, 1, ScalarType.Float32)]   // GTX 10xx, P40
    [DataRow(6, 0, ScalarType.Float32)]   // P100
    public void AutoPicksWhatTheGpuComputesFastest(int major, int minor, ScalarType expected)
    {
        var gpu = new Device(TorchSharp.DeviceType.CUDA, 0);
        Assert.AreEqual(expected, ComputeSelection.SelectPrecision(ComputePrecision.Auto, gpu, (major, minor)));
        Assert.AreEqual(ScalarType.BFloat16, ComputeSelection.SelectPrecision(ComputePrecision.Auto, gpu, null), "unknown capability");
        Assert.AreEqual(ScalarType.Float32, ComputeSelection.SelectPrecision(ComputePrecision.Auto, CPU, (major, minor)), "the CPU");
        Assert.AreEqual(ScalarType.Float32, ComputeSelection.SelectPrecision(ComputePrecision.Auto, CPU), "the CPU, asking nothing of a driver");
        foreach (var (choice, dtype) in new[] { (ComputePrecision.Float32, ScalarType.Float32), (ComputePrecision.BFloat16, ScalarType.BFloat16),
                     (ComputePrecision.Float16, ScalarType.Float16) })
            Assert.AreEqual(dtype, ComputeSelection.SelectPrecision(choice, gpu, (major, minor)), $"{choice} as chosen");

        var warning = ComputeSelection.SlowCudaPrecisionWarning(ScalarType.BFloat16, (major, minor));
        Assert.AreEqual(major < 8, warning is not null, warning);
        if (warning is not null) StringAssert.Contains(warning, $"compute capability {major}.{minor}, which has no bf16 tensor cores");
        Assert.IsNull(ComputeSelection.SlowCudaPrecisionWarning(ScalarType.Float16, (major, minor)), "fp16 is never slower than fp32 on a GPU");
        Assert.IsNull(ComputeSelection.SlowCudaPrecisionWarning(ScalarType.BFloat16, null), "unknown capability");
    }

    /// <summary>The driver calls, made against a stand-in libcuda (compiled here with the C compiler) that knows two
    /// devices: the capability of each, and null for a device it does not have, a library that is not there, and one
    /// without the driver's functions.</summary>
    [TestMethod]
    public void TheCapabilityIsWhatTheDriverSays()
    {
        if (!OperatingSystem.IsLinux()) Assert.Inconclusive("builds a Linux shared library");
        var dir = TestFolders.Create("mlnetpeft-fake-cuda-");
        try
        {
            File.WriteAllText(Path.Combine(dir, "cuda.c"), """
                int cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
                int cuDeviceGet(int *device, int ordinal) { if (ordinal < 0 || ordinal > 1) return 101; *device = 10 + ordinal; return 0; }
                int cuDeviceGetAttribute(int *value, int attribute, int device)
                {
                    static const int capability[2][2] = { { 7, 5 }, { 9, 0 } };
                    if (device < 10 || device > 11 || attribute < 75 || attribute > 76) return 1;
                    *value = capability[device - 10][attribute - 75];
                    return 0;
                }
                """);
            var library = Path.Combine(dir, "libfakecuda.so");
            using (var cc = System.Diagnostics.Process.Start("cc", ["-shared", "-fPIC", "-o", library, Path.Combine(dir, "cuda.c")]))
            {
                cc.WaitForExit();
                Assert.AreEqual(0, cc.ExitCode, "cc builds the stand-in driver");
            }
            Assert.AreEqual((7, 5), CudaCapability.Ask(0, library));
            Assert.AreEqual((9, 0), CudaCapability.Ask(1, library));
            Assert.IsNull(CudaCapability.Ask(2, library), "a device the driver does not have");
            Assert.IsNull(CudaCapability.Ask(0, Path.Combine(dir, "missing.so")), "no driver");
            Assert.IsNull(CudaCapability.Ask(0, "libm.so.6"), "a library without the driver's functions");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Where there is no CUDA driver (this CPU machine), asking for a capability answers null rather than failing.</summary>
    [TestMethod]
    public void WithoutACudaDriverTheCapabilityIsUnknown()
    {
        if (System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so.1", out _)) Assert.Inconclusive("this machine has a CUDA driver");
        Assert.IsNull(CudaCapability.Of(0));
        Assert.IsNull(ComputeSelection.Capability(new Device(TorchSharp.DeviceType.CUDA, -1)));
        Assert.AreEqual("CUDA (compute capability unknown)", ComputeSelection.Describe(new Device(TorchSharp.DeviceType.CUDA, 0)));
        Assert.AreEqual("CPU", ComputeSelection.Describe(CPU));
    }

    /// <summary>A bf16 trainer on this machine's CPU warns in ML.NET's log exactly when this CPU's flags lack native bf16.</summary>
    [TestMethod]
    public void TheTrainerWarnsThroughMlNetsLog()
    {
        if (OperatingSystem.IsLinux()) Assert.IsNotNull(ComputeSelection.CpuFlags(), "/proc/cpuinfo has the CPU's flags");
        var ml = new MLContext(seed: 1);
        var warnings = PeftTrainerFixture.LogMessages(ml, ChannelMessageKind.Warning);
        var options = PeftTrainerFixture.WithPrecision(PeftTrainerFixture.Lora(1), ComputePrecision.BFloat16);
        options.Device = ComputeDevice.Cpu;
        PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(16, seed: 3)), options);
        var expected = ComputeSelection.SlowCpuPrecisionWarning(CPU, ScalarType.BFloat16, ComputeSelection.CpuFlags());
        Assert.AreEqual(expected is not null, warnings.Any(w => w.Contains("without native bf16")), string.Join("; ", warnings));
    }
}
