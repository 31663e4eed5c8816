using System.IO.Compression;
using Microsoft.ML;

namespace MlNetPeft.MlNet;

/// <summary>
/// Model zip entries of weights (an embedded backbone, a full fine-tuning's trained weights) written and read past
/// ML.NET's repository streams (its internals, as the rest of saving uses them). ML.NET stages every entry in a
/// temporary file both ways and deflates it at the default level; weights barely compress (roberta-base's 499 MB to
/// 464 MB), and deflating them was 10–14 s of a save. So these entries are stored as they are, and read from the zip
/// itself rather than from ML.NET's extracted copy.
/// </summary>
internal static class StoredZipEntry
{
    /// <summary>Writes entry <paramref name="name"/> of the model's directory, uncompressed.</summary>
    public static void Write(ModelSaveContext ctx, string name, Action<Stream> write)
    {
        var repository = ctx.Repository;
        repository.Flush(); // ML.NET's own entries so far: a zip being created takes one entry at a time
        repository.GetPath(out var path, out _, ctx.Directory, name, createDir: false);
        if (!repository.PathMap.TryAdd(path, null!)) throw new InvalidOperationException($"model zip: entry {path} written twice");
        using var stream = repository._archive.CreateEntry(path, CompressionLevel.NoCompression).Open();
        write(stream);
    }

    /// <summary>Entry <paramref name="name"/> of the model's directory, stored or deflated (as zips saved before 2026-12-08
    /// have their entries), or null when the zip has none.</summary>
    public static ZipArchiveEntry? FindOrNull(ModelLoadContext ctx, string name)
    {
        var repository = ctx.Repository;
        repository.GetPath(out var path, out _, ctx.Directory, name, createDir: false);
        // As ML.NET's reader: a zip written on Windows separates with backslashes.
        return repository._entries.TryGetValue(path, out var entry) || repository._entries.TryGetValue(path.Replace('/', '\\'), out entry)
            ? entry
            : null;
    }

    /// <summary>The whole content of entry <paramref name="name"/>, or null when the zip has none; a length the content
    /// does not have is an error naming the entry.</summary>
    public static byte[]? ReadAllOrNull(ModelLoadContext ctx, string name)
    {
        if (FindOrNull(ctx, name) is not { } entry) return null;
        try
        {
            if (entry.Length > Array.MaxLength) throw new InvalidDataException($"{entry.Length} bytes");
            var bytes = new byte[entry.Length];
            using (var content = entry.Open()) content.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            throw Damaged(name, e);
        }
    }

    /// <summary>The error for entry <paramref name="name"/> whose content could not be read (<paramref name="e"/>:
    /// System.IO.Compression's error, which names neither the entry nor what usually causes it).</summary>
    public static InvalidDataException Damaged(string name, Exception e) =>
        new($"model zip {name} is damaged ({e.Message}): copy the zip again from where it was saved", e);
}
