using System.Security.Cryptography;
using MlNetPeft.Backbone;

namespace MlNetPeft.MlNet;

/// <summary>
/// The backbone weights file a model zip embeds (EmbedBackbone), held as an open file rather than as bytes in memory
/// (roberta-base's is 500 MB): after training, the backbone directory's own file; after loading, the zip's entry
/// copied to a temporary file that is unlinked at once (on Windows, deleted when closed), so it leaves nothing behind.
/// A zip saved from the model gets the file's bytes, checked against the recorded SHA-256.
/// </summary>
internal sealed class EmbeddedBackbone : IDisposable
{
    private readonly FileStream _content;
    private readonly bool _isPrivateCopy; // hashed as it was written, and no other process can reach it
    private readonly object _reading = new();

    private EmbeddedBackbone(FileStream content, bool isPickled, string sha256, bool isPrivateCopy)
    {
        _content = content;
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
        new(new FileStream(weightsFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete), TensorFile.IsPickled(weightsFile), sha256, isPrivateCopy: false);

    /// <summary>Copies a zip entry to a temporary file, hashing it on the way. The file is unlinked at once (on
    /// Windows, deleted when closed): only the open stream reaches it. (ML.NET's own Model.Load needs the temporary
    /// folder too.)</summary>
    public static EmbeddedBackbone Read(Stream entry, bool isPickled)
    {
        var path = Path.Combine(Path.GetTempPath(), $"mlnetpeft-backbone-{Guid.NewGuid():N}");
        var content = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
        try
        {
            if (!OperatingSystem.IsWindows()) File.Delete(path); // a process killed while copying leaves nothing
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 20];
            for (int n; (n = entry.Read(buffer)) > 0;)
            {
                hash.AppendData(buffer, 0, n);
                content.Write(buffer, 0, n);
            }
            content.Flush();
            return new EmbeddedBackbone(content, isPickled, Convert.ToHexStringLower(hash.GetHashAndReset()), isPrivateCopy: true);
        }
        catch
        {
            content.Dispose();
            throw;
        }
    }

    /// <summary>The file's tensors for a loader, read one at a time; <paramref name="source"/> names it in
    /// errors. Only while the model is built: <see cref="WriteTo"/> moves the same stream.</summary>
    public ITensorSource OpenWeights(string source) => TensorFile.Open(_content, IsPickled, source, ownsFile: false);

    /// <summary>Writes the bytes to <paramref name="destination"/> once they are checked to have <see cref="Sha256"/>
    /// (a backbone file changed since training is an error naming it, not a zip that would not load). A loaded zip's
    /// private copy was hashed as it was written and is not hashed again.</summary>
    public void WriteTo(Stream destination)
    {
        lock (_reading)
        {
            _content.Position = 0;
            if (!_isPrivateCopy && CheckpointDirectory.Sha256Of(_content) != Sha256)
                throw new InvalidOperationException($"The backbone weights to embed ({_content.Name}) " +
                    $"no longer have the SHA-256 the model was trained on ({Sha256}): the file changed after training. Restore " +
                    "it, or train again on the backbone as it is now.");
            _content.Position = 0;
            _content.CopyTo(destination);
        }
    }

    public void Dispose() => _content.Dispose();
}
