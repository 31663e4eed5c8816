using System.Diagnostics;
using System.IO.Compression;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;

namespace MlNetPeft.Tests.Packaging;

/// <summary>
/// The library as a user gets it: `dotnet pack` into a local feed, then an application outside this repository
/// (test/PackageConsumer, copied out) restores it from that feed, builds, trains, saves, loads and scores. On Debian 12
/// that run only works if the package's build targets patched the application's copy of libLibTorchSharp.so; they
/// must also have patched its TorchSharp.dll with the keep-alive tool the package carries. A second process that only
/// loads the zip (a service) scores the same rows bit for bit.
/// </summary>
[TestClass]
public sealed class NuGetPackageTests
{
    [TestMethod]
    [DataRow(null, null, null)]                // the ML.NET and Tokenizers versions the package was built against
    [DataRow("6.0.0", "3.0.0", "linux-x64")]   // the next major versions, built for one platform (as the README advises)
    public void PackedLibraryTrainsSavesAndLoadsInAnApplicationOutsideTheRepository(string? mlNet, string? tokenizers, string? runtime)
    {
        var work = TestFolders.Create("mlnetpeft-package");
        var feed = Path.Combine(work, "feed");
        // A version of its own, restored into a packages folder of its own: no earlier pack is ever picked up.
        var version = $"0.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        Dotnet(TestData.RepoRoot, "pack", "src/MlNetPeft/MlNetPeft.csproj", "-c", "Release", "-o", feed, $"-p:PackageVersion={version}");

        var package = Path.Combine(feed, $"MlNetPeft.{version}.nupkg");
        using (var zip = ZipFile.OpenRead(package))
        {
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
            foreach (var entry in new[] { "lib/net10.0/MlNetPeft.dll", "buildTransitive/MlNetPeft.targets", "build/MlNetPeft.targets",
                         "build/TorchSharpKeepAlive.targets", "tools/TorchSharpKeepAlive/TorchSharpKeepAlive.dll", "tools/TorchSharpKeepAlive/Mono.Cecil.dll", "PackageReadme.md" })
                Assert.Contains(entry, entries);
            using var nuspec = zip.GetEntry("MlNetPeft.nuspec")!.Open();
            var dependencies = XDocument.Load(nuspec).Descendants().Where(e => e.Name.LocalName == "dependency")
                .ToDictionary(e => (string)e.Attribute("id")!, e => (string)e.Attribute("version")!);
            // Exactly the TorchSharp it was built against: a mismatch is a restore error, not a TypeLoadException later.
            Assert.AreEqual("[0.107.0]", dependencies["TorchSharp"]);
            // The application chooses CPU or CUDA libtorch; a CPU dependency here would clash with TorchSharp-cuda-linux.
            Assert.IsFalse(dependencies.Keys.Any(id => id.StartsWith("TorchSharp-") || id.StartsWith("libtorch")), string.Join(", ", dependencies.Keys));
            Assert.IsFalse(dependencies.ContainsKey("TorchSharpKeepAlive"), "the build tool travels inside the package");
        }

        var app = Path.Combine(work, "app");
        Directory.CreateDirectory(app);
        foreach (var file in new[] { "PackageConsumer.csproj", "Program.cs" })
            File.Copy(Path.Combine(TestData.RepoRoot, "test", "PackageConsumer", file), Path.Combine(app, file));
        File.WriteAllText(Path.Combine(app, "nuget.config"), NuGetConfig(feed, Path.Combine(work, "packages")));
        Dotnet(app, ["build", "-c", "Release", $"-p:MlNetPeftVersion={version}",
            .. mlNet is null ? Array.Empty<string>() : [$"-p:MlNetVersion={mlNet}", $"-p:TokenizersVersion={tokenizers}"],
            .. runtime is null ? Array.Empty<string>() : ["-r", runtime]]);
        var output = Path.Combine([app, "bin", "Release", "net10.0", .. runtime is null ? Array.Empty<string>() : [runtime]]);
        if (mlNet is not null)
            Assert.AreEqual(new Version(mlNet).Major, FileMajorVersionIn(output, "Microsoft.ML.Data.dll"), "the application did not get the newer ML.NET");
        // With a runtime identifier, the native libraries sit beside the program, and only that platform's.
        if (runtime is not null)
            Assert.IsFalse(Directory.Exists(Path.Combine(output, "runtimes")), "a build for one platform carried others' native libraries");

        var consumer = Path.Combine(output, "PackageConsumer.dll");
        var zipPath = Path.Combine(work, "model.zip");
        var trained = Dotnet(app, consumer, TestData.TinyBackbone, zipPath);
        StringAssert.Contains(trained, "same scores after Model.Load: True");
        StringAssert.Contains(trained, "same scores after Model.Load of a zip that embeds the backbone: True", "ML.NET's internals the embedded entry uses");
        StringAssert.Contains(trained, "TorchSharp keeps Scalar and Tensor arguments alive: True");
        var scores = ScoresLine(trained);

        // A service: another process that only loads the zip; ML.NET finds MlNetPeft by the name the zip records.
        var service = Dotnet(app, consumer, "--score", zipPath);
        StringAssert.Contains(service, "MlNetPeft loaded before Model.Load: False");
        Assert.AreEqual(scores, ScoresLine(service), "the same scores, to the last bit, in a fresh process");
        if (mlNet is null) PublishedApplicationsCarryThePatches(app, version, work, zipPath, scores);
        Directory.Delete(work, recursive: true);
    }

    private static string ScoresLine(string output) =>
        output.Split('\n').Select(l => l.Trim()).SingleOrDefault(l => l.StartsWith("scores: ")) ?? throw new AssertFailedException($"no scores line in:\n{output}");

    /// <summary>
    /// Publish forms that transform assemblies: ReadyToRun compiles TorchSharp.dll to native code (patched afterwards,
    /// its native code would stay unpatched, and Mono.Cecil cannot write such an image: the publish failed), and a
    /// single-file bundle leaves no TorchSharp.dll in the publish folder to patch (it was published unpatched). The
    /// package's targets patch the file before those steps take it.
    /// </summary>
    private static void PublishedApplicationsCarryThePatches(string app, string version, string work, string zipPath, string scores)
    {
        foreach (var singleFile in new[] { false, true })
        {
            var published = Path.Combine(work, singleFile ? "single-file" : "ready-to-run");
            Dotnet(app, "publish", "-c", "Release", "-r", "linux-x64", "--self-contained", "false", $"-p:MlNetPeftVersion={version}",
                "-p:PublishReadyToRun=true", $"-p:PublishSingleFile={singleFile}", "-o", published);
            if (!singleFile)
            {
                using var pe = new PEReader(File.OpenRead(Path.Combine(published, "TorchSharp.dll")));
                Assert.IsGreaterThan(0, pe.PEHeaders.CorHeader!.ManagedNativeHeaderDirectory.Size, "TorchSharp.dll was not compiled ReadyToRun");
            }
            else Assert.IsFalse(File.Exists(Path.Combine(published, "TorchSharp.dll")), "TorchSharp.dll is inside the bundle");
            var output = ChildProcess.Run(Path.Combine(published, "PackageConsumer"), published, TestData.TinyBackbone, Path.Combine(published, "model.zip"));
            StringAssert.Contains(output, "same scores after Model.Load: True");
            StringAssert.Contains(output, "same scores after Model.Load of a zip that embeds the backbone: True");
            StringAssert.Contains(output, "TorchSharp keeps Scalar and Tensor arguments alive: True", singleFile ? "single file" : "ReadyToRun");
            Assert.AreEqual(scores, ScoresLine(ChildProcess.Run(Path.Combine(published, "PackageConsumer"), published, "--score", zipPath)),
                "the published service scores the first build's zip as it did");
        }
    }

    // ML.NET's assembly versions stay 1.0.0.0; the file version carries the package's.
    private static int FileMajorVersionIn(string output, string file) =>
        FileVersionInfo.GetVersionInfo(Path.Combine(output, file)).FileMajorPart;

    /// <summary>The local feed first, then the usual source; packages already in this machine's NuGet cache are
    /// read from there (a fallback folder), so only MlNetPeft itself is extracted.</summary>
    private static string NuGetConfig(string feed, string packages)
    {
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var repoSources = XDocument.Load(Path.Combine(TestData.RepoRoot, "NuGet.config")).Descendants("packageSources").Single();
        repoSources.AddFirst(new XElement("add", new XAttribute("key", "local"), new XAttribute("value", feed)));
        repoSources.Elements("clear").Remove();
        repoSources.AddFirst(new XElement("clear"));
        return new XDocument(new XElement("configuration",
            new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", packages))),
            new XElement("fallbackPackageFolders", new XElement("add", new XAttribute("key", "cache"), new XAttribute("value", cache))),
            repoSources)).ToString();
    }

    private static string Dotnet(string directory, params string[] args) => ChildProcess.Run("dotnet", directory, args);
}
