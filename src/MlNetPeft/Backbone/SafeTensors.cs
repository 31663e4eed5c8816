using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Minimal safetensors reader and writer (8-byte little-endian header length, JSON header, raw data).
/// TorchSharp has no safetensors support; F32, F16 and BF16 are what HF RoBERTa checkpoints use (I64 and U8 hold
/// training state).
/// </summary>
public static class SafeTensors
{
    private static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F32"] = (ScalarType.Float32, 4),
        ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2),
        ["I64"] = (ScalarType.Int64, 8),
        ["U8"] = (ScalarType.Byte, 1),
    };

    /// <summary>Reads every tensor of a file onto the CPU, in its stored dtype, one tensor at a time (so a file may be
    /// larger than a .NET array).</summary>
    public static Dictionary<string, Tensor> Load(string path) => Load(path, out _);

    /// <summary>As <see cref="Load(string)"/>, also giving the file's metadata block (empty when absent).</summary>
    public static Dictionary<string, Tensor> Load(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        using var file = File.OpenRead(path);
        return Load(file, path, out metadata);
    }

    /// <summary>As <see cref="Load(string)"/>, from a seekable stream; <paramref name="source"/> names it in errors.</summary>
    public static Dictionary<string, Tensor> Load(Stream file, string source, out IReadOnlyDictionary<string, string> metadata)
    {
        var entries = ReadHeader(file, source, out metadata);
        var result = new Dictionary<string, Tensor>();
        try
        {
            foreach (var e in entries.OrderBy(e => e.Begin)) result[e.Name] = Read(file, e);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>Reads every tensor from the bytes of a safetensors file; <paramref name="source"/> names it in errors.</summary>
    public static Dictionary<string, Tensor> Load(byte[] bytes, string source)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var e in ReadHeader(new MemoryStream(bytes, writable: false), source, out _))
        {
            var tensor = result[e.Name] = torch.empty(e.Shape, e.Type);
            if (e.Length > 0) tensor.bytes = bytes.AsSpan((int)e.Begin, (int)e.Length);
        }
        return result;
    }

    internal sealed record Entry(string Name, ScalarType Type, long[] Shape, long Begin, long Length);

    /// <summary>One tensor's data, read from its place in the file straight into the tensor's memory (a CPU tensor's
    /// <c>bytes</c> is a span over it).</summary>
    internal static Tensor Read(Stream file, Entry e)
    {
        var tensor = torch.empty(e.Shape, e.Type);
        ReadInto(file, e, tensor);
        return tensor;
    }

    /// <summary>Reads an entry's data into a contiguous CPU tensor of its dtype and shape.</summary>
    internal static void ReadInto(Stream file, Entry e, Tensor tensor)
    {
        if (e.Length == 0) return;
        file.Position = e.Begin;
        file.ReadExactly(tensor.bytes);
    }

    /// <summary>The tensors a header describes, with their data's place in the file, checked against the file's size.</summary>
    private static List<Entry> ParseHeader(byte[] json, long dataStart, long fileLength, string source,
        out IReadOnlyDictionary<string, string> metadata)
    {
        try
        {
            using var header = JsonDocument.Parse(json);
            var entries = new List<Entry>();
            var names = new HashSet<string>();
            metadata = new Dictionary<string, string>();
            foreach (var entry in header.RootElement.EnumerateObject())
            {
                if (!names.Add(entry.Name)) throw new InvalidDataException($"{source}: tensor '{entry.Name}' is listed twice");
                if (entry.Name == "__metadata__")
                {
                    metadata = entry.Value.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
                    continue;
                }
                entries.Add(ParseEntry(entry, dataStart, fileLength, source));
            }
            return entries;
        }
        // A damaged header (a flipped byte, a file cut inside it) fails inside System.Text.Json's reader or accessors,
        // whose errors name neither the file nor the tensor.
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException or OverflowException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: the safetensors header is damaged ({e.Message})", e);
        }
    }

    private static Entry ParseEntry(JsonProperty entry, long dataStart, long fileLength, string source)
    {
        var dtypeName = entry.Value.GetProperty("dtype").GetString()!;
        if (!DTypes.TryGetValue(dtypeName, out var dtype))
            throw new InvalidDataException($"{source}: tensor '{entry.Name}' has unsupported dtype {dtypeName}");
        var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        if (shape.Any(n => n < 0) || offsets is not [>= 0 and var from, var to] || to < from
            || checked(shape.Aggregate(1L, (a, b) => a * b) * dtype.Size) != to - from || dataStart + to > fileLength)
            throw new InvalidDataException($"{source}: tensor '{entry.Name}' data does not match its shape [{string.Join(",", shape)}]");
        return new Entry(entry.Name, dtype.Type, shape, dataStart + from, to - from);
    }

    /// <summary>Serialises CPU tensors (any of the supported dtypes), keys sorted, as safetensors bytes.</summary>
    public static byte[] Save(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var stream = new MemoryStream();
        Write(stream, tensors, metadata);
        return stream.ToArray();
    }

    /// <summary>Writes tensors (any device, any of the supported dtypes), keys sorted, as a safetensors file to
    /// <paramref name="stream"/>, one tensor at a time; with <paramref name="dtype"/>, each converted to it as it is
    /// written (so no converted copy of them all is made first).</summary>
    public static void Write(Stream stream, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        ScalarType? dtype = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var name in names)
        {
            var t = tensors[name];
            var type = dtype ?? t.dtype;
            var typeName = DTypes.FirstOrDefault(d => d.Value.Type == type).Key
                ?? throw new ArgumentException($"tensor '{name}' has dtype {type}, which safetensors files here do not hold");
            long length = t.numel() * DTypes[typeName].Size;
            header[name] = new { dtype = typeName, shape = t.shape, data_offsets = new[] { offset, offset + length } };
            offset += length;
        }
        if (metadata is not null) header["__metadata__"] = metadata;
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8;
        Span<byte> length8 = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length8, padded);
        stream.Write(length8);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var name in names)
        {
            using var t = tensors[name].detach().to(dtype ?? tensors[name].dtype).cpu().contiguous();
            stream.Write(t.bytes);
        }
    }

    /// <summary>Reads only the header of a safetensors file and returns its metadata block (empty when absent).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        using var file = File.OpenRead(path);
        ReadHeader(file, path, out var metadata);
        return metadata;
    }

    /// <summary>The header of a safetensors file (or its bytes), read from its start: its tensors' places and its
    /// metadata; <paramref name="source"/> names it in errors.</summary>
    internal static List<Entry> ReadHeader(Stream file, string source, out IReadOnlyDictionary<string, string> metadata)
    {
        Span<byte> prefix = stackalloc byte[8];
        if (file.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8) throw new InvalidDataException($"{source}: too short to be a safetensors file");
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(prefix);
        if (headerLength <= 0 || 8 + headerLength > file.Length)
            throw new InvalidDataException($"{source}: corrupt safetensors header length {headerLength}");
        var json = new byte[headerLength];
        file.ReadExactly(json);
        return ParseHeader(json, 8 + headerLength, file.Length, source, out metadata);
    }

    /// <summary>Reads only the metadata block of a safetensors file (empty when absent).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(byte[] bytes)
    {
        ReadHeader(new MemoryStream(bytes, writable: false), "safetensors bytes", out var metadata);
        return metadata;
    }
}
