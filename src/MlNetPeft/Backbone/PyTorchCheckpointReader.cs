using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;
using TensorRef = MlNetPeft.Backbone.PyTorchCheckpoint.TensorRef;

namespace MlNetPeft.Backbone;

/// <summary>
/// A torch.save zip (PyTorch 1.6 and later: <c>archive/data.pkl</c>, then each storage's bytes in
/// <c>archive/data/key</c>) kept open and read one tensor at a time, as a loader asks for them: a pytorch_model.bin
/// never sits in memory whole beside the model it fills. Storages are stored uncompressed, so a tensor that is its
/// whole storage is read straight into its parameter.
/// </summary>
internal sealed class PyTorchCheckpointReader : ITensorSource
{
    private readonly ZipArchive _zip;
    private readonly string _source;
    private readonly Dictionary<string, TensorRef> _tensors = [];
    private readonly Dictionary<string, ZipArchiveEntry> _storages = [];

    /// <param name="file">A seekable stream of the file.</param>
    /// <param name="source">Names the file in errors.</param>
    /// <param name="ownsFile">Whether disposing the reader closes <paramref name="file"/>.</param>
    public PyTorchCheckpointReader(Stream file, string source, bool ownsFile)
    {
        _source = source;
        file.Position = 0;
        _zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: !ownsFile);
        try
        {
            var pickle = _zip.Entries.FirstOrDefault(e => e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))
                ?? throw new InvalidDataException($"{source}: the zip has no data.pkl, so it is not a torch.save checkpoint");
            var prefix = pickle.FullName[..^"data.pkl".Length];
            if (_zip.GetEntry(prefix + "byteorder") is { } byteOrder && Encoding.ASCII.GetString(ReadEntry(byteOrder)) != "little")
                throw new InvalidDataException($"{source}: saved on a big-endian machine, which this reader does not support");
            foreach (var (name, tensor) in PyTorchCheckpoint.ReadStateDict(ReadEntry(pickle), source))
            {
                _tensors[name] = tensor;
                var storage = tensor.Storage;
                if (_storages.ContainsKey(storage.Key)) continue;
                var entry = _zip.GetEntry($"{prefix}data/{storage.Key}") ?? throw new InvalidDataException($"{source}: storage data/{storage.Key} is missing");
                // Checked before anything is allocated: no storage is larger than its file.
                if (storage.Numel > file.Length / storage.Size || entry.Length != storage.Bytes)
                    throw new InvalidDataException($"{source}: storage data/{storage.Key} holds {entry.Length} bytes, not {storage.Numel} {storage.Type} values");
                _storages[storage.Key] = entry;
            }
        }
        catch
        {
            _zip.Dispose();
            throw;
        }
    }

    public IEnumerable<string> Names => _tensors.Keys;

    /// <summary>A new tensor of <paramref name="name"/>, as torch.save stored it: a strided view of its own copy of the
    /// storage (views of one storage read it once each).</summary>
    public Tensor? Read(string name)
    {
        if (!_tensors.TryGetValue(name, out var tensor)) return null;
        using var storage = torch.empty(tensor.Storage.Numel, tensor.Storage.Type);
        ReadStorage(tensor, storage);
        return tensor.ViewOf(storage);
    }

    public bool TryReadInto(string name, Tensor target)
    {
        if (!_tensors.TryGetValue(name, out var tensor) || !tensor.IsWholeStorage || tensor.Storage.Type != target.dtype
            || !tensor.Shape.SequenceEqual(target.shape) || target.device_type != DeviceType.CPU || !target.is_contiguous())
            return false;
        ReadStorage(tensor, target);
        return true;
    }

    public void Dispose() => _zip.Dispose();

    private void ReadStorage(TensorRef tensor, Tensor into)
    {
        if (tensor.Storage.Bytes == 0) return;
        using var data = _storages[tensor.Storage.Key].Open();
        try { data.ReadExactly(into.bytes); }
        catch (EndOfStreamException e) { throw new InvalidDataException($"{_source}: storage data/{tensor.Storage.Key} is cut short", e); }
    }

    private static byte[] ReadEntry(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        var data = new byte[entry.Length];
        stream.ReadExactly(data);
        return data;
    }
}
