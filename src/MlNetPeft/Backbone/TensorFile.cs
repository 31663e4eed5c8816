using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// A file of named tensors as HF writes them: safetensors (model.safetensors, adapter_model.safetensors) or, in
/// checkpoints made before safetensors, torch.save's (pytorch_model.bin, adapter_model.bin). A zip, torch.save's older
/// format or a name ending in .bin is read as torch.save's (which says so if it is neither of its formats).
/// </summary>
internal static class TensorFile
{
    /// <summary>Every tensor of the file, on the CPU in its stored dtype.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var file = Open(path);
        return file.ReadAll();
    }

    /// <summary>The file's tensors as a source a loader reads one at a time, straight from the file.</summary>
    public static ITensorSource Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        return Open(File.OpenRead(path), IsPickled(path), path, ownsFile: true);
    }

    /// <summary>As <see cref="Open(string)"/>, from a seekable stream of such a file; <paramref name="source"/> names it
    /// in errors, and with <paramref name="ownsFile"/> the source closes the stream (also when it fails to open).</summary>
    public static ITensorSource Open(Stream file, bool isPickled, string source, bool ownsFile)
    {
        if (isPickled) return new PyTorchCheckpointReader(file, source, ownsFile);
        try { return new SafeTensorsReader(file, source, ownsFile); }
        catch
        {
            if (ownsFile) file.Dispose();
            throw;
        }
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
