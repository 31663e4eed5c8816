using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using MlNetPeft.Backbone;

namespace MlNetPeft.MlNet;

/// <summary>
/// The backbone weights file a model zip embeds (EmbedBackbone), held as an open file rather than as bytes in memory
/// (roberta-base's is 500 MB): after training, the backbone directory's own file; after loading, the zip's entry
/// copied to a temporary file that is unlinked at once (on Windows, deleted when closed), so it leaves nothing behind.
/// A zip saved from the model gets the file's bytes, checked against the recorded SHA-256. Read at offsets, with no
/// shared position, so models sharing it (<see cref="SharedBackbone"/>) can load and save at once; the file closes when
/// its last holder disposes it.
/// </summary>
internal sealed class EmbeddedBackbone : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly string _name;
    private readonly bool _isPrivateCopy; // hashed as it was written, and no other process can reach it
    private readonly object _holding = new();
    private int _holders = 1;

    private EmbeddedBackbone(SafeFileHandle file, string name, bool isPickled, string sha256, bool isPrivateCopy)
    {
        _file = file;
        _name = name;
        IsPickled = isPickled;
        Sha256 = sha256;
        _isPrivateCopy = isPrivateCopy;
    }

    /// <summary>torch.save's format (pytorch_model.bin), not safetensors.</summary>
    public bool IsPickled { get; }

    /// <summary>The SHA-256 of the bytes (hex): as hashed when read from a zip, or as training recorded it.</summary>
    public string Sha256 { get; }

    /// <summary>The weights file of a backbone directory, of SHA-256 <paramref name="sha256"/>, kept open (another
    /// process may still replace or delete it).</summary>
    public static EmbeddedBackbone Of(string weightsFile, string sha256) =>
        new(File.OpenHandle(weightsFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete), weightsFile,
            TensorFile.IsPickled(weightsFile), sha256, isPrivateCopy: false);

    /// <summary>Copies a zip entry to a temporary file, hashing it on the way. The file is unlinked at once (on
    /// Windows, deleted when closed): only the open handle reaches it. (ML.NET's own Model.Load needs the temporary
    /// folder too.)</summary>
    public static EmbeddedBackbone Read(Stream entry, bool isPickled)
    {
        var path = Path.Combine(Path.GetTempPath(), $"mlnetpeft-backbone-{Guid.NewGuid():N}");
        var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
        try
        {
            if (!OperatingSystem.IsWindows()) File.Delete(path); // a process killed while copying leaves nothing
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 20];
            long length = 0;
            for (int n; (n = entry.Read(buffer)) > 0; length += n)
            {
                hash.AppendData(buffer, 0, n);
                RandomAccess.Write(file, buffer.AsSpan(0, n), length);
            }
            return new EmbeddedBackbone(file, path, isPickled, Convert.ToHexStringLower(hash.GetHashAndReset()), isPrivateCopy: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>One more holder: the file stays open until each has disposed it.</summary>
    public EmbeddedBackbone Hold()
    {
        lock (_holding)
        {
            ObjectDisposedException.ThrowIf(_holders == 0, this);
            _holders++;
        }
        return this;
    }

    /// <summary>The file's tensors for a loader, read one at a time; <paramref name="source"/> names it in errors.</summary>
    public ITensorSource OpenWeights(string source) => TensorFile.Open(Content(), IsPickled, source, ownsFile: true);

    /// <summary>Writes the bytes to <paramref name="destination"/> once they are checked to have <see cref="Sha256"/>
    /// (a backbone file changed since training is an error naming it, not a zip that would not load). A loaded zip's
    /// private copy was hashed as it was written and is not hashed again.</summary>
    public void WriteTo(Stream destination)
    {
        if (!_isPrivateCopy)
            using (var content = Content())
                if (CheckpointDirectory.Sha256Of(content) != Sha256)
                    throw new InvalidOperationException($"The backbone weights to embed ({_name}) " +
                        $"no longer have the SHA-256 the model was trained on ({Sha256}): the file changed after training. Restore " +
                        "it, or train again on the backbone as it is now.");
        using (var content = Content()) content.CopyTo(destination, 1 << 20);
    }

    private FileView Content() => new(_file, RandomAccess.GetLength(_file));

    public void Dispose()
    {
        lock (_holding)
        {
            if (_holders == 0 || --_holders > 0) return;
        }
        _file.Dispose();
    }

    /// <summary>A read-only stream over the file with a position of its own (reads at offsets).</summary>
    private sealed class FileView(SafeFileHandle file, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;

        public override long Position
        {
            get => _position;
            set => _position = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position >= length) return 0;
            int n = RandomAccess.Read(file, buffer[..(int)Math.Min(buffer.Length, length - _position)], _position);
            _position += n;
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => length + offset,
        };

        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
