namespace MlNetPeft.Backbone;

/// <summary>
/// Files of one directory written whole or not at all: each is written as "name.tmp" beside its final name, flushed,
/// and all are renamed into place once every one is written. A write that fails (a full disk, most likely) deletes the
/// partial files and throws an IOException naming the one that failed, leaving the directory's earlier files as they
/// were; so neither a truncated weights file nor an old config beside new weights is left for a loader to read.
/// </summary>
internal sealed class StagedFiles : IDisposable
{
    private const string Suffix = ".tmp";
    private readonly string _directory;
    private readonly List<string> _staged = [];

    /// <param name="directory">Created if missing.</param>
    public StagedFiles(string directory)
    {
        Directory.CreateDirectory(directory);
        _directory = directory;
    }

    /// <summary>Writes <paramref name="name"/>'s staged copy through <paramref name="write"/>.</summary>
    public void Write(string name, Action<Stream> write)
    {
        var temporary = Path.Combine(_directory, name) + Suffix;
        _staged.Add(temporary);
        try
        {
            using var file = File.Create(temporary);
            write(file);
            file.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Dispose();
            throw new IOException($"Writing '{temporary}' failed: {e.Message}. Nothing in '{_directory}' was replaced.", e);
        }
    }

    public void Write(string name, byte[] bytes) => Write(name, stream => stream.Write(bytes));

    /// <summary>Renames every staged file over its final name.</summary>
    public void Commit()
    {
        foreach (var temporary in _staged) File.Move(temporary, temporary[..^Suffix.Length], overwrite: true);
        _staged.Clear();
    }

    /// <summary>Deletes the staged files not committed (up to gigabytes on a full disk).</summary>
    public void Dispose()
    {
        foreach (var temporary in _staged)
        {
            try { File.Delete(temporary); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        _staged.Clear();
    }
}
