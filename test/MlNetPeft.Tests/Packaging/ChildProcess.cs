using System.Diagnostics;

namespace MlNetPeft.Tests.Packaging;

/// <summary>Runs a program the packaging tests build (dotnet itself, a published app) as a separate process.</summary>
internal static class ChildProcess
{
    /// <summary>Runs <paramref name="program"/> in <paramref name="directory"/>; fails the test with its output unless it exits 0.</summary>
    public static string Run(string program, string directory, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) psi.ArgumentList.Add(arg);
        // dotnet test's own MSBuild settings must not leak into this separate build.
        foreach (var name in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(name);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var output = stdout + stderr.Result;
        Assert.AreEqual(0, process.ExitCode, $"{program} {string.Join(' ', args)} failed:\n{output}");
        return output;
    }
}
