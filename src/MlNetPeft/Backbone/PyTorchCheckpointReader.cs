using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;
using TensorRef = MlNetPeft.Backbone.PyTorchCheckpoint.TensorRef;

namespace MlNetPeft.Backbone;

/// <summary>
/// A torch.save file kept open and read one tensor at a time, as a loader asks for them, so a pytorch_model.bin never
/// sits in memory whole beside the model it fills. Opening reads the pickled state dict and finds each storage: since
/// PyTorch 1.6 an entry <c>archive/data/key</c> of a zip, stored uncompressed; before, a place in the file after the
/// pickles. A tensor that is its whole storage is read straight into its parameter.
/// </summary>
internal sealed class PyTorchCheckpointReader : ITensorSource
{
    private readonly Stream _file;
    private readonly bool _ownsFile;
    private readonly ZipArchive? _zip;
    private readonly string _source;
    private readonly Dictionary<string, TensorRef> _tensors = [];
    private readonly Dictionary<string, ZipArchiveEntry> _entries = []; // zip format: storage key → its entry
    private readonly Dictionary<string, long> _offsets = [];           // legacy format: storage key → where its bytes start

    /// <param name="file">A seekable stream of the file.</param>
    /// <param name="source">Names the file in errors.</param>
    /// <param name="ownsFile">Whether disposing the reader closes <paramref name="file"/>.</param>
    public PyTorchCheckpointReader(Stream file, string source, bool ownsFile)
    {
        (_file, _source, _ownsFile) = (file, source, ownsFile);
        try
        {
            Span<byte> head = stackalloc byte[PyTorchCheckpoint.LegacyMagic.Length];
            file.Position = 0;
            head = head[..file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)];
            if (PyTorchCheckpoint.IsZip(head))
            {
                _zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: true);
                FindEntries(_zip);
            }
            else if (head.SequenceEqual(PyTorchCheckpoint.LegacyMagic))
                FindOffsets();
            else
                throw new InvalidDataException($"{source}: neither a zip archive nor a legacy file of torch.save, so not a PyTorch checkpoint");
        }
        catch (InvalidDataException e) when (IsZipError(e))
        {
            Dispose();
            throw Damaged(e);
        }
        catch
        {
            Dispose();
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
        if (!_tensors.TryGetValue(name, out var tensor) || !tensor.IsWholeStorage
            || !ITensorSource.CanReadInto(target, tensor.Storage.Type, tensor.Shape))
            return false;
        ReadStorage(tensor, target);
        return true;
    }

    public void Dispose()
    {
        _zip?.Dispose();
        if (_ownsFile) _file.Dispose();
    }

    /// <summary>PyTorch 1.6 and later: <c>archive/data.pkl</c>, then each storage's bytes in <c>archive/data/key</c>.</summary>
    private void FindEntries(ZipArchive zip)
    {
        var pickle = zip.Entries.FirstOrDefault(e => e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))
            ?? throw new InvalidDataException($"{_source}: the zip has no data.pkl, so it is not a torch.save checkpoint");
        var prefix = pickle.FullName[..^"data.pkl".Length];
        if (zip.GetEntry(prefix + "byteorder") is { } byteOrder && Encoding.ASCII.GetString(ReadEntry(byteOrder)) != "little")
            throw new InvalidDataException($"{_source}: saved on a big-endian machine, which this reader does not support");
        foreach (var (name, tensor) in PyTorchCheckpoint.ReadZipStateDict(ReadEntry(pickle), _source))
        {
            _tensors[name] = tensor;
            var storage = tensor.Storage;
            if (_entries.ContainsKey(storage.Key)) continue;
            var entry = zip.GetEntry($"{prefix}data/{storage.Key}") ?? throw new InvalidDataException($"{_source}: storage data/{storage.Key} is missing");
            // Checked before anything is allocated: no storage is larger than its file.
            if (storage.Numel > _file.Length / storage.Size || entry.Length != storage.Bytes)
                throw new InvalidDataException($"{_source}: storage data/{storage.Key} holds {entry.Length} bytes, not {storage.Numel} {storage.Type} values");
            _entries[storage.Key] = entry;
        }
    }

    /// <summary>Before PyTorch 1.6: after the pickles, per storage key its element count (int64) and bytes.</summary>
    private void FindOffsets()
    {
        var (stateDict, keys) = PyTorchCheckpoint.ReadLegacyPickles(_file, _source);
        var named = stateDict.Select(t => t.Tensor.Storage).DistinctBy(s => s.Key).ToDictionary(s => s.Key);
        long at = _file.Position;
        Span<byte> count = stackalloc byte[8];
        foreach (var key in keys)
        {
            if (at + 8 > _file.Length) throw new InvalidDataException($"{_source}: storage {key} is cut short");
            _file.Position = at;
            _file.ReadExactly(count);
            long numel = BinaryPrimitives.ReadInt64LittleEndian(count);
            if (!named.TryGetValue(key, out var storage) || numel != storage.Numel)
                throw new InvalidDataException($"{_source}: storage {key} holds {numel} values where the pickle names {(storage is null ? "none" : storage.Numel)}");
            if (numel > (_file.Length - at - 8) / storage.Size) throw new InvalidDataException($"{_source}: storage {key} is cut short"); // (no overflow)
            _offsets[key] = at + 8;
            at += 8 + storage.Bytes;
        }
        foreach (var (name, tensor) in stateDict)
        {
            if (!_offsets.ContainsKey(tensor.Storage.Key)) throw new InvalidDataException($"{_source}: storage {tensor.Storage.Key} is missing");
            _tensors[name] = tensor;
        }
    }

    private void ReadStorage(TensorRef tensor, Tensor into)
    {
        var key = tensor.Storage.Key;
        if (tensor.Storage.Bytes == 0) return;
        try
        {
            if (_zip is null)
            {
                _file.Position = _offsets[key];
                _file.ReadExactly(into.bytes);
                return;
            }
            using var data = _entries[key].Open();
            data.ReadExactly(into.bytes);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{_source}: storage {key} is cut short", e);
        }
        catch (InvalidDataException e) when (IsZipError(e))
        {
            throw Damaged(e);
        }
    }

    // System.IO.Compression's errors name neither the file nor what usually causes them.
    private bool IsZipError(InvalidDataException e) => !e.Message.StartsWith(_source, StringComparison.Ordinal);

    private InvalidDataException Damaged(InvalidDataException e) =>
        new($"{_source}: the zip archive is damaged ({e.Message}); a download or copy cut short looks like this", e);

    private static byte[] ReadEntry(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        var data = new byte[entry.Length];
        stream.ReadExactly(data);
        return data;
    }
}
