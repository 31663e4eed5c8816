using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Minimal safetensors reader and writer (8-byte little-endian header length, JSON header, raw data).
/// TorchSharp has no safetensors support; F32, F16 and BF16 are what HF RoBERTa checkpoints use.
/// </summary>
public static class SafeTensors
{
    private static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F32"] = (ScalarType.Float32, 4),
        ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2),
        ["I64"] = (ScalarType.Int64, 8),
    };

    /// <summary>Reads every tensor of a file onto the CPU, in its stored dtype.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        return Load(File.ReadAllBytes(path), path);
    }

    /// <summary>Reads every tensor from the bytes of a safetensors file; <paramref name="source"/> names it in errors.</summary>
    public static Dictionary<string, Tensor> Load(byte[] bytes, string source)
    {
        if (bytes.Length < 8) throw new InvalidDataException($"{source}: too short to be a safetensors file");
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        if (headerLength <= 0 || 8 + headerLength > bytes.Length)
            throw new InvalidDataException($"{source}: corrupt safetensors header length {headerLength}");
        var dataStart = 8 + (int)headerLength;
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var result = new Dictionary<string, Tensor>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__") continue;
            var dtypeName = entry.Value.GetProperty("dtype").GetString()!;
            if (!DTypes.TryGetValue(dtypeName, out var dtype))
                throw new InvalidDataException($"{source}: tensor '{entry.Name}' has unsupported dtype {dtypeName}");
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            long count = shape.Aggregate(1L, (a, b) => a * b);
            long begin = dataStart + offsets[0], length = offsets[1] - offsets[0];
            if (length != count * dtype.Size || begin + length > bytes.Length)
                throw new InvalidDataException($"{source}: tensor '{entry.Name}' data does not match its shape [{string.Join(",", shape)}]");
            var tensor = torch.empty(shape, dtype.Type);
            if (length > 0) tensor.bytes = bytes.AsSpan((int)begin, (int)length);
            result[entry.Name] = tensor;
        }
        return result;
    }

    /// <summary>Serialises CPU tensors (any of the supported dtypes), keys sorted, as safetensors bytes.</summary>
    public static byte[] Save(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        var blobs = new List<byte[]>();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var name in names)
        {
            using var t = tensors[name].detach().cpu().contiguous();
            var dtype = DTypes.First(d => d.Value.Type == t.dtype).Key;
            var raw = t.bytes.ToArray();
            header[name] = new { dtype, shape = t.shape, data_offsets = new[] { offset, offset + raw.Length } };
            blobs.Add(raw);
            offset += raw.Length;
        }
        if (metadata is not null) header["__metadata__"] = metadata;
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8;
        using var stream = new MemoryStream();
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, padded);
        stream.Write(length);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var blob in blobs) stream.Write(blob);
        return stream.ToArray();
    }

    /// <summary>Reads only the metadata block of a safetensors file (empty when absent).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(byte[] bytes)
    {
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        return header.RootElement.TryGetProperty("__metadata__", out var meta)
            ? meta.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "")
            : new Dictionary<string, string>();
    }
}
