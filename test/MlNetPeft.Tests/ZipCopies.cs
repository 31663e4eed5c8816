using System.IO.Compression;

namespace MlNetPeft.Tests;

/// <summary>Copies of zip files (model zips, torch.save checkpoints) with one entry changed, as tests damage them.</summary>
internal static class ZipCopies
{
    /// <summary>A copy of <paramref name="original"/> in which the entry whose name ends in "/<paramref name="entry"/>"
    /// holds what <paramref name="change"/> makes of its bytes, or is left out where that is null; every entry is
    /// written at <paramref name="compression"/>.</summary>
    public static byte[] WithEntry(byte[] original, string entry, Func<byte[], byte[]?> change,
        CompressionLevel compression = CompressionLevel.NoCompression)
    {
        using var output = new MemoryStream();
        using (var source = new ZipArchive(new MemoryStream(original), ZipArchiveMode.Read))
        using (var target = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var e in source.Entries)
            {
                var bytes = new MemoryStream();
                using (var read = e.Open()) read.CopyTo(bytes);
                var content = e.FullName.EndsWith("/" + entry, StringComparison.Ordinal) ? change(bytes.ToArray()) : bytes.ToArray();
                if (content is null) continue;
                using var write = target.CreateEntry(e.FullName, compression).Open();
                write.Write(content);
            }
        }
        return output.ToArray();
    }

    /// <summary>A copy of a model zip in which the MlNetPeft transformer's own stream (its Model.key: ML.NET's
    /// ModelHeader, with the signature PEFTTEXT at 0x40) holds what <paramref name="change"/> makes of its bytes.</summary>
    public static byte[] WithTransformerStream(byte[] zip, Func<byte[], byte[]> change) => WithEntry(zip, "Model.key",
        header => System.Text.Encoding.ASCII.GetString(header, 0x40, 8) == "PEFTTEXT" ? change(header) : header);

    /// <summary>A copy of a model zip whose transformer reads as written at model <paramref name="version"/> (the header's
    /// version written follows the signature), as an older build of the library wrote it.</summary>
    public static byte[] WithTransformerVersion(byte[] zip, uint version) => WithTransformerStream(zip, header =>
    {
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x48), version);
        return header;
    });
}
