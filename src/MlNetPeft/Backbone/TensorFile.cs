using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// A file of named tensors as HF writes them: safetensors (model.safetensors, adapter_model.safetensors) or, in
/// checkpoints made before safetensors, torch.save's zip (pytorch_model.bin, adapter_model.bin). A zip or a name
/// ending in .bin is read as torch.save's (which names the legacy pickle format if that is what it finds).
/// </summary>
internal static class TensorFile
{
    /// <summary>Every tensor of the file, on the CPU in its stored dtype.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        return IsPickled(path) ? PyTorchCheckpoint.Load(File.ReadAllBytes(path), path) : SafeTensors.Load(path);
    }

    /// <summary>The file's tensors as a source a loader reads one at a time: safetensors straight from the file, a
    /// torch.save file (a zip that cannot be read piecemeal here) loaded whole.</summary>
    public static ITensorSource Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        return Open(File.OpenRead(path), IsPickled(path), path, ownsFile: true);
    }

    /// <summary>As <see cref="Open(string)"/>, from a seekable stream of such a file; <paramref name="source"/> names it
    /// in errors, and with <paramref name="ownsFile"/> the source closes the stream (a torch.save file's at once).</summary>
    public static ITensorSource Open(Stream file, bool isPickled, string source, bool ownsFile)
    {
        if (!isPickled)
        {
            try { return new SafeTensorsReader(file, source, ownsFile); }
            catch
            {
                if (ownsFile) file.Dispose();
                throw;
            }
        }
        var bytes = new byte[file.Length];
        try
        {
            file.Position = 0;
            file.ReadExactly(bytes);
        }
        finally
        {
            if (ownsFile) file.Dispose();
        }
        return new TensorDictionary(PyTorchCheckpoint.Load(bytes, source), owns: true);
    }

    /// <summary>Whether the file is read as torch.save's rather than as safetensors.</summary>
    public static bool IsPickled(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var file = File.OpenRead(path)) file.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        return IsPickled(magic, path);
    }

    /// <summary>Every tensor of a file's bytes; <paramref name="source"/> names it in errors.</summary>
    public static Dictionary<string, Tensor> Load(byte[] bytes, string source) =>
        IsPickled(bytes, source) ? PyTorchCheckpoint.Load(bytes, source) : SafeTensors.Load(bytes, source);

    private static bool IsPickled(ReadOnlySpan<byte> head, string name) =>
        PyTorchCheckpoint.IsTorchSave(head) || name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase);

    /// <summary>The safetensors file of <paramref name="directory"/> or, where it has none, its pickled one; null when neither is there.</summary>
    public static string? Find(string directory, string safetensorsName, string pickledName) =>
        new[] { safetensorsName, pickledName }.Select(n => Path.Combine(directory, n)).FirstOrDefault(File.Exists);
}
