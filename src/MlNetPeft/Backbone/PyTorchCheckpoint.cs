using System.Buffers.Binary;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Reads a state dict saved by <c>torch.save</c>, as HF's pytorch_model.bin: since PyTorch 1.6 a zip holding
/// <c>data.pkl</c>, a pickled dict of tensors, and one entry per storage under <c>data/</c>; before, the pickles and
/// the storages' bytes one after another. Like
/// <c>torch.load(weights_only=True)</c> it understands only the pickle opcodes and the few globals a state dict is
/// made of (OrderedDict, PyTorch's tensor rebuild functions and storage types), so nothing in the file is run.
/// </summary>
internal static class PyTorchCheckpoint
{
    private static readonly Dictionary<string, (ScalarType Type, int Size)> StorageTypes = new()
    {
        ["FloatStorage"] = (ScalarType.Float32, 4),
        ["HalfStorage"] = (ScalarType.Float16, 2),
        ["BFloat16Storage"] = (ScalarType.BFloat16, 2),
        ["DoubleStorage"] = (ScalarType.Float64, 8),
        ["LongStorage"] = (ScalarType.Int64, 8),
        ["IntStorage"] = (ScalarType.Int32, 4),
        ["ByteStorage"] = (ScalarType.Byte, 1),
        ["BoolStorage"] = (ScalarType.Bool, 1),
    };

    // What torch.save wrote before PyTorch 1.6: the pickled magic number 0x1950a86a20f9469cfc6c (protocol 2).
    internal static readonly byte[] LegacyMagic = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, (byte)'.'];

    /// <summary>Whether <paramref name="bytes"/> start as torch.save's output does: a zip archive (PyTorch 1.6 and
    /// later) or the legacy format's magic number.</summary>
    public static bool IsTorchSave(ReadOnlySpan<byte> bytes) => IsZip(bytes) || bytes.StartsWith(LegacyMagic);

    /// <summary>Whether <paramref name="bytes"/> start as a zip archive does.</summary>
    public static bool IsZip(ReadOnlySpan<byte> bytes) => bytes.StartsWith("PK\x03\x04"u8);

    /// <summary>Every tensor of the state dict, on the CPU in its stored dtype; <paramref name="source"/> names the file in errors.</summary>
    public static Dictionary<string, Tensor> Load(byte[] bytes, string source)
    {
        using ITensorSource reader = new PyTorchCheckpointReader(new MemoryStream(bytes, writable: false), source, ownsFile: true);
        return reader.ReadAll();
    }

    /// <summary>The state dict that a zip's <c>data.pkl</c> pickles: each tensor as a view of a storage the zip holds
    /// under <c>data/</c>.</summary>
    internal static List<(string Name, TensorRef Tensor)> ReadZipStateDict(byte[] pickle, string source) =>
        StateDict(new Unpickler(new MemoryStream(pickle, writable: false), source).Next(), source);

    /// <summary>Before PyTorch 1.6: pickles of the magic number, the format version, the machine's facts, the object
    /// and the sorted storage keys, then per key its element count (int64) and bytes. Reads the pickles from the
    /// start of <paramref name="file"/>, leaving it where the first storage's count starts.</summary>
    internal static (List<(string Name, TensorRef Tensor)> StateDict, List<string> StorageKeys) ReadLegacyPickles(Stream file, string source)
    {
        file.Position = LegacyMagic.Length;
        var pickles = new Unpickler(file, source);
        pickles.Next(); // format version 1001
        if (pickles.Next() is PyDict facts && facts.Any(f => f is ("little_endian", false)))
            throw new InvalidDataException($"{source}: saved on a big-endian machine, which this reader does not support");
        var stateDict = StateDict(pickles.Next(), source);
        if (pickles.Next() is not List<object?> keys || keys.Any(k => k is not string))
            throw new InvalidDataException($"{source}: the storage keys after the pickled object are missing");
        return (stateDict, keys.Cast<string>().ToList());
    }

    private static List<(string Name, TensorRef Tensor)> StateDict(object? root, string source)
    {
        if (root is not PyDict dict)
            throw new InvalidDataException($"{source}: holds a {root?.GetType().Name ?? "None"}, not a state dict");
        var result = new List<(string, TensorRef)>();
        foreach (var (key, value) in dict)
        {
            if (key is not string name || value is not TensorRef tensor)
                throw new InvalidDataException($"{source}: entry '{key}' is not a named tensor, so this is not a state dict");
            result.Add((name, tensor));
        }
        return result;
    }

    private sealed record Global(string Module, string Name)
    {
        public override string ToString() => $"{Module}.{Name}";
    }

    /// <summary>A storage the pickle names: its values' type and size in bytes, its key (its entry's name under
    /// <c>data/</c>) and its element count.</summary>
    internal sealed record StorageRef(ScalarType Type, int Size, string Key, long Numel)
    {
        public long Bytes => Numel * Size;
    }

    /// <summary>A tensor of the state dict: a strided view of a storage, as <c>_rebuild_tensor_v2</c> makes it.</summary>
    internal sealed record TensorRef(StorageRef Storage, long Offset, long[] Shape, long[] Stride)
    {
        public Tensor ViewOf(Tensor storage) => storage.as_strided(Shape, Stride, Offset);

        /// <summary>Whether the tensor is its whole storage in row-major order, so the storage's bytes are its own.</summary>
        public bool IsWholeStorage
        {
            get
            {
                long expected = 1;
                for (int d = Shape.Length - 1; d >= 0; d--)
                {
                    if (Shape[d] != 1 && Stride[d] != expected) return false;
                    expected *= Shape[d];
                }
                return Offset == 0 && expected == Storage.Numel;
            }
        }
    }

    /// <summary>A pickled dict or OrderedDict: its items in order.</summary>
    private sealed class PyDict : List<(object? Key, object? Value)>;

    /// <summary>The subset of Python's pickle machine (protocols 2–5) that state dicts use, reading the pickles that
    /// follow each other in <paramref name="code"/> from its position on (and leaving it after the last one read).</summary>
    private sealed class Unpickler(Stream code, string source)
    {
        private static readonly object Mark = new();
        private readonly List<object?> _stack = [];
        private readonly Dictionary<long, object?> _memo = [];

        /// <summary>The next pickle's object.</summary>
        public object? Next()
        {
            _stack.Clear();
            _memo.Clear();
            while (true)
            {
                int next = code.ReadByte();
                if (next < 0) throw Corrupt("ends without STOP");
                byte op = (byte)next;
                switch (op)
                {
                    case 0x80: Bytes(1); break;                            // PROTO
                    case 0x95: Bytes(8); break;                            // FRAME
                    case (byte)'.': return Pop();                          // STOP
                    case (byte)'(': _stack.Add(Mark); break;               // MARK
                    case (byte)'}': _stack.Add(new PyDict()); break;       // EMPTY_DICT
                    case (byte)']': _stack.Add(new List<object?>()); break; // EMPTY_LIST
                    case (byte)')': _stack.Add(Array.Empty<object?>()); break; // EMPTY_TUPLE
                    case (byte)'t': _stack.Add(PopToMark().ToArray()); break; // TUPLE
                    case 0x85: _stack.Add(new[] { Pop() }); break;         // TUPLE1
                    case 0x86: { var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b }); break; } // TUPLE2
                    case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b, c }); break; } // TUPLE3
                    case (byte)'N': _stack.Add(null); break;               // NONE
                    case 0x88: _stack.Add(true); break;                    // NEWTRUE
                    case 0x89: _stack.Add(false); break;                   // NEWFALSE
                    case (byte)'K': _stack.Add((long)Bytes(1)[0]); break;  // BININT1
                    case (byte)'M': _stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break; // BININT2
                    case (byte)'J': _stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;  // BININT
                    case 0x8a: _stack.Add(Long(Bytes(Bytes(1)[0]))); break; // LONG1
                    case (byte)'G': _stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break; // BINFLOAT
                    case 0x8c: _stack.Add(Text(Bytes(1)[0])); break;       // SHORT_BINUNICODE
                    case (byte)'X': _stack.Add(Text(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break; // BINUNICODE
                    case 0x8d: _stack.Add(Text(BinaryPrimitives.ReadInt64LittleEndian(Bytes(8)))); break; // BINUNICODE8
                    case (byte)'q': _memo[Bytes(1)[0]] = Peek(); break;    // BINPUT
                    case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))] = Peek(); break; // LONG_BINPUT
                    case 0x94: _memo[_memo.Count] = Peek(); break;         // MEMOIZE
                    case (byte)'h': _stack.Add(Memo(Bytes(1)[0])); break;  // BINGET
                    case (byte)'j': _stack.Add(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break; // LONG_BINGET
                    case (byte)'c': _stack.Add(new Global(Line(), Line())); break; // GLOBAL
                    case 0x93: { var name = As<string>(Pop()); _stack.Add(new Global(As<string>(Pop()), name)); break; } // STACK_GLOBAL
                    case (byte)'Q': _stack.Add(PersistentLoad(Pop())); break; // BINPERSID
                    case (byte)'R': { var args = Pop(); _stack.Add(Call(Pop(), args)); break; } // REDUCE
                    case (byte)'b': Build(Pop(), Peek()); break;           // BUILD
                    case (byte)'s': { var v = Pop(); var k = Pop(); As<PyDict>(Peek()).Add((k, v)); break; } // SETITEM
                    case (byte)'u':                                        // SETITEMS
                    {
                        var items = PopToMark();
                        var dict = As<PyDict>(Peek());
                        for (int i = 0; i + 1 < items.Count; i += 2) dict.Add((items[i], items[i + 1]));
                        break;
                    }
                    case (byte)'a': { var v = Pop(); As<List<object?>>(Peek()).Add(v); break; } // APPEND
                    case (byte)'e': { var items = PopToMark(); As<List<object?>>(Peek()).AddRange(items); break; } // APPENDS
                    default: throw Corrupt($"uses pickle opcode 0x{op:x2} at byte {code.Position - 1}, which a state dict does not need");
                }
            }
        }

        /// <summary>The callables a state dict is rebuilt with; any other global is refused, not run.</summary>
        private object? Call(object? callable, object? args)
        {
            var a = As<object?[]>(args);
            switch (callable)
            {
                case Global { Module: "collections", Name: "OrderedDict" } when a.Length == 0:
                    return new PyDict();
                case Global { Module: "torch._utils", Name: "_rebuild_tensor_v2" } when a.Length >= 4:
                {
                    var (storage, offset, size, stride) = (As<StorageRef>(a[0]), As<long>(a[1]), Longs(a[2]), Longs(a[3]));
                    if (size.Length != stride.Length || offset < 0 || size.Any(n => n < 0) || stride.Any(s => s < 0) || !FitsIn(storage.Numel, offset, size, stride))
                        throw Corrupt($"has a tensor of shape [{string.Join(",", size)}] that does not fit its storage");
                    return new TensorRef(storage, offset, size, stride);
                }
                case Global { Module: "torch._utils", Name: "_rebuild_parameter" } when a.Length >= 1:
                    return As<TensorRef>(a[0]);
                default:
                    throw Corrupt($"calls {callable}, which a state dict does not need (refused, as torch.load(weights_only=True) does)");
            }
        }

        /// <summary>Whether every element of a view lies inside a storage of <paramref name="numel"/> elements.</summary>
        private static bool FitsIn(long numel, long offset, long[] size, long[] stride)
        {
            if (size.Contains(0)) return true;
            try { return checked(offset + size.Zip(stride, (n, s) => (n - 1) * s).Sum()) < numel; }
            catch (OverflowException) { return false; }
        }

        private void Build(object? state, object? target)
        {
            // An OrderedDict's state is its _metadata (module versions): not needed for the weights.
            if (target is not PyDict) throw Corrupt($"sets the state of a {target?.GetType().Name ?? "None"}, which a state dict does not need");
        }

        private StorageRef PersistentLoad(object? pid)
        {
            // ('storage', torch.<Type>Storage, key, location, numel), the legacy format adding a view of it (or None)
            if (pid is not object?[] { Length: 5 or 6 } t || t[0] is not "storage" || t[1] is not Global type || t[2] is not string key
                || t[4] is not long numel || numel < 0 || (t.Length == 6 && t[5] is not null))
                throw Corrupt("has a persistent id that is not a whole storage");
            if (type.Module != "torch" || !StorageTypes.TryGetValue(type.Name, out var dtype))
                throw Corrupt($"has a storage of type {type}, which this reader does not support");
            return new StorageRef(dtype.Type, dtype.Size, key, numel);
        }

        private long[] Longs(object? tuple) => As<object?[]>(tuple).Select(As<long>).ToArray();

        private long Long(ReadOnlySpan<byte> littleEndian)
        {
            if (littleEndian.Length > 8) throw Corrupt("has an integer wider than 64 bits");
            long v = littleEndian.Length > 0 && (littleEndian[^1] & 0x80) != 0 ? -1 : 0;
            for (int i = littleEndian.Length - 1; i >= 0; i--) v = (v << 8) | littleEndian[i];
            return v;
        }

        private T As<T>(object? o) =>
            o is T t ? t : throw Corrupt($"has a {o?.GetType().Name ?? "None"} where a state dict has a {typeof(T).Name}");

        private byte[] Bytes(long n)
        {
            if (n < 0 || n > code.Length - code.Position) throw Corrupt("is cut short"); // checked before a claimed length is allocated
            var bytes = new byte[n];
            code.ReadExactly(bytes);
            return bytes;
        }

        private string Text(long n) => Encoding.UTF8.GetString(Bytes(n));

        private string Line()
        {
            var line = new List<byte>();
            for (int b = code.ReadByte(); b != '\n'; b = code.ReadByte())
                line.Add(b >= 0 ? (byte)b : throw Corrupt("is cut short"));
            return Encoding.UTF8.GetString(line.ToArray());
        }

        private object? Memo(long key) => _memo.TryGetValue(key, out var v) ? v : throw Corrupt($"reads memo {key} before it is written");

        private object? Peek() => _stack.Count > 0 ? _stack[^1] : throw Corrupt("pops an empty stack");

        private object? Pop()
        {
            var top = Peek();
            _stack.RemoveAt(_stack.Count - 1);
            if (ReferenceEquals(top, Mark)) throw Corrupt("pops a mark");
            return top;
        }

        private List<object?> PopToMark()
        {
            int mark = _stack.LastIndexOf(Mark);
            if (mark < 0) throw Corrupt("has no mark to pop to");
            var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
            _stack.RemoveRange(mark, _stack.Count - mark);
            return items;
        }

        private InvalidDataException Corrupt(string what) => new($"{source}: data.pkl {what}");
    }
}
