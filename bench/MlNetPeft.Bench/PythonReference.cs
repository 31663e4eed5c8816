using System.Diagnostics;
using System.Text.Json;

namespace MlNetPeft.Bench;

/// <summary>bench/reference.py (PyTorch) run by /usr/bin/python3, one JSON line per call.</summary>
internal static class PythonReference
{
    private const string Python = "/usr/bin/python3";
    private const string Install = "apt-get install -y python3-torch libopenblas0-openmp python3-regex";

    /// <summary>The script --reference-script names (default bench/reference.py), checked before any run starts: a
    /// missing PyTorch would otherwise show only after the first of our runs, minutes in.</summary>
    public static string Script(BenchArgs a)
    {
        var script = a.Text("reference-script", Path.Combine(BenchArgs.RepositoryRoot(), "bench", "reference.py"));
        if (!File.Exists(script)) throw new ArgumentException($"--reference: the PyTorch reference {script} does not exist");
        var (code, _, error) = Start(["-c", "import torch"]);
        if (code != 0)
            throw new ArgumentException($"--reference needs PyTorch for {Python} (Debian: {Install}); it said: {error.Trim().Split('\n')[^1]}");
        return script;
    }

    /// <summary>Runs the script with <paramref name="args"/> and returns the JSON line it prints last.</summary>
    public static JsonDocument Run(string script, IEnumerable<string> args)
    {
        var (code, output, error) = Start([script, .. args]);
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (code != 0 || line is null)
            throw new InvalidOperationException($"{Path.GetFileName(script)} {string.Join(' ', args)} failed ({code}): {error}");
        return JsonDocument.Parse(line);
    }

    private static (int Code, string Output, string Error) Start(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) psi.ArgumentList.Add(arg);
        Process process;
        try { process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {Python}"); }
        catch (System.ComponentModel.Win32Exception e) { throw new ArgumentException($"--reference needs {Python} ({e.Message})"); }
        using (process)
        {
            var error = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output, error.Result);
        }
    }
}
