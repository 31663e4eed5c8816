using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>A safetensors file kept open and read one tensor at a time, as a loader asks for them.</summary>
internal sealed class SafeTensorsReader : ITensorSource
{
    private readonly Stream _file;
    private readonly bool _ownsFile;
    private readonly Dictionary<string, SafeTensors.Entry> _entries;

    /// <param name="file">A seekable stream of the file.</param>
    /// <param name="source">Names the file in errors.</param>
    /// <param name="ownsFile">Whether disposing the reader closes <paramref name="file"/>.</param>
    public SafeTensorsReader(Stream file, string source, bool ownsFile)
    {
        _file = file;
        _ownsFile = ownsFile;
        file.Position = 0;
        _entries = SafeTensors.ReadHeader(file, source, out _).ToDictionary(e => e.Name);
    }

    public IEnumerable<string> Names => _entries.Keys;

    public Tensor? Read(string name) => _entries.TryGetValue(name, out var entry) ? SafeTensors.Read(_file, entry) : null;

    /// <summary>Reads the tensor into the target's own memory (one pass over it, no tensor in between).</summary>
    public bool TryReadInto(string name, Tensor target)
    {
        if (!_entries.TryGetValue(name, out var entry) || !ITensorSource.CanReadInto(target, entry.Type, entry.Shape)) return false;
        SafeTensors.ReadInto(_file, entry, target);
        return true;
    }

    public void Dispose()
    {
        if (_ownsFile) _file.Dispose();
    }
}
