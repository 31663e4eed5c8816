using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

/// <summary>The bench's resume check (run on a GPU to see CUDA's dropout masks line up) passes on the CPU, where a
/// resumed run must equal the straight one exactly.</summary>
[TestClass]
public sealed class ResumeCheckTests
{
    [TestMethod]
    public void AResumedRunEqualsTheStraightOneOnTheCpu() =>
        Assert.AreEqual(0, ResumeCheck.Run(BenchArgs.Parse(["resume", "--shape", "tiny", "--device", "cpu", "--method", "lora,lorabias,adalora"])));
}
