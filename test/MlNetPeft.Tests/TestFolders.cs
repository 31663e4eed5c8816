using System.Diagnostics;

namespace MlNetPeft.Tests;

/// <summary>
/// Scratch folders for the tests, all inside one folder per test run, deleted when the run ends. The suite writes
/// zips, exported adapters, packed packages and published applications; left in the temporary folder they came to
/// 9 GB over a few weeks of runs here, on the disk CI shares. A run that dies before its cleanup leaves its
/// folder behind, so each run first deletes those of processes no longer alive.
/// </summary>
[TestClass]
public static class TestFolders
{
    private static readonly string Parent = Path.Combine(Path.GetTempPath(), "mlnetpeft-tests");
    private const string RunPrefix = "run-";

    /// <summary>This run's folder (created on first use).</summary>
    public static string Run { get; } = Path.Combine(Parent, RunPrefix + Environment.ProcessId);

    /// <summary>A new, empty folder inside this run's folder.</summary>
    public static string Create(string prefix = "")
    {
        string folder;
        do folder = Path.Combine(Run, prefix + Path.GetRandomFileName().Replace(".", ""));
        while (Directory.Exists(folder));
        return Directory.CreateDirectory(folder).FullName;
    }

    [AssemblyInitialize]
    public static void DeleteFoldersOfEndedRuns(TestContext _)
    {
        if (!Directory.Exists(Parent)) return;
        foreach (var folder in Directory.GetDirectories(Parent, RunPrefix + "*"))
            if (int.TryParse(Path.GetFileName(folder)[RunPrefix.Length..], out var pid) && !IsAlive(pid))
                TryDelete(folder);
    }

    [AssemblyCleanup]
    public static void DeleteThisRunsFolder() => TryDelete(Run);

    private static bool IsAlive(int pid)
    {
        try { using var process = Process.GetProcessById(pid); return !process.HasExited; }
        catch (ArgumentException) { return false; }
    }

    // A file still open elsewhere must not fail the run; the next run retries.
    private static void TryDelete(string folder)
    {
        try { Directory.Delete(folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
