using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML;

namespace MlNetPeft.MlNet;

/// <summary>
/// The SHA-256 of each stream a model zip holds for the transformer (and of its model-info JSON and label values, the
/// rest of its own stream), written as one more stream and checked when the zip is read. ML.NET's zip reader does not
/// check its entries' CRC, so a zip damaged in a copy or download would otherwise load, and predict with, weights that
/// are not the ones saved: with one to three random bytes changed, 132 of 300 copies of a model zip loaded and scored
/// differently (measured 2026-12-07). Zips saved before this (model version 0x00010001) have no checksums and load
/// unchecked.
/// </summary>
internal sealed class ZipChecksums
{
    public const string StreamName = "Checksums.json";
    private readonly SortedDictionary<string, string> _sha256;

    private ZipChecksums(SortedDictionary<string, string> sha256) => _sha256 = sha256;

    /// <summary>Checksums for a zip being written.</summary>
    public ZipChecksums() : this(new(StringComparer.Ordinal)) { }

    /// <summary>Writes a stream of the zip, hashing it on the way; <paramref name="stored"/>: uncompressed
    /// (<see cref="StoredZipEntry"/>).</summary>
    public void SaveStream(ModelSaveContext ctx, string name, Action<Stream> write, bool stored = false)
    {
        void Hashed(Stream destination)
        {
            // A hash algorithm's transform passes its input through unchanged, so the stream writes on as it hashes.
            using var sha = SHA256.Create();
            using (var hashing = new CryptoStream(destination, sha, CryptoStreamMode.Write, leaveOpen: true))
                write(hashing);
            _sha256[name] = Hex(sha.Hash!);
        }
        if (stored) StoredZipEntry.Write(ctx, name, Hashed);
        else ctx.SaveBinaryStream(name, w => Hashed(w.BaseStream));
    }

    /// <summary>Records the hash of text saved in the model's own header (its model-info JSON).</summary>
    public void AddText(string name, string text) => AddBytes(name, Encoding.UTF8.GetBytes(text));

    /// <summary>Records the hash of bytes saved in the model's own stream (its label values).</summary>
    public void AddBytes(string name, byte[] bytes) => _sha256[name] = Hex(SHA256.HashData(bytes));

    /// <summary>Records the hash of a stream that was hashed before it was written (an embedded backbone's file).</summary>
    public void AddHash(string name, string sha256) => _sha256[name] = sha256;

    /// <summary>Writes the checksums, after every stream they cover.</summary>
    public void Save(ModelSaveContext ctx) => ctx.SaveBinaryStream(StreamName, w => w.Write(JsonSerializer.SerializeToUtf8Bytes(_sha256)));

    /// <summary>The checksums of a zip being read, from its <see cref="StreamName"/> stream's bytes (null where it has
    /// none), or null for a zip saved before they were written; one saved with them (<paramref name="required"/>) that
    /// has none is damaged.</summary>
    public static ZipChecksums? Read(byte[]? json, bool required)
    {
        if (json is null)
            return required ? throw new InvalidDataException($"model zip lacks its {StreamName}, which it was saved with: the zip is damaged") : null;
        try { return new(JsonSerializer.Deserialize<SortedDictionary<string, string>>(json) ?? throw new JsonException("null")); }
        catch (JsonException e) { throw new InvalidDataException($"model zip {StreamName} is damaged ({e.Message})", e); }
    }

    /// <summary>Throws when <paramref name="bytes"/>, read from stream <paramref name="name"/>, are not what was saved.</summary>
    public void Verify(string name, ReadOnlySpan<byte> bytes) => Verify(name, Hex(SHA256.HashData(bytes)));

    /// <summary>Throws when stream <paramref name="name"/>, which the zip does not have, was saved in it.</summary>
    public void VerifyAbsent(string name)
    {
        if (_sha256.ContainsKey(name))
            throw new InvalidDataException($"model zip lacks {name}, which it was saved with: the zip is damaged");
    }

    /// <summary>As <see cref="Verify(string, ReadOnlySpan{byte})"/>, for a hash already taken.</summary>
    private void Verify(string name, string sha256)
    {
        if (!_sha256.TryGetValue(name, out var saved))
            throw new InvalidDataException($"model zip {StreamName} has no checksum for {name}: the zip is damaged");
        if (saved != sha256)
            throw new InvalidDataException($"model zip {name} does not have the SHA-256 it was saved with: the zip is damaged " +
                "(a copy or download that changed or lost bytes); copy it again from where it was saved");
    }

    /// <summary>As <see cref="Verify(string, ReadOnlySpan{byte})"/>, for text saved in the model's own header.</summary>
    public void VerifyText(string name, string text) => Verify(name, Encoding.UTF8.GetBytes(text));

    private static string Hex(byte[] hash) => Convert.ToHexStringLower(hash);
}
