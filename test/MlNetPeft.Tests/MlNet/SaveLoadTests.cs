using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;

namespace MlNetPeft.Tests.MlNet;

/// <summary>mlContext.Model.Save/Load round trips, the backbone fingerprint and where the backbone is found.</summary>
[TestClass]
public sealed class SaveLoadTests
{
    private static string TempZip() => Path.Combine(TestFolders.Create("mlnetpeft-zip-"), "model.zip");

    private static (MLContext Ml, IDataView Data, ITransformer Model) Train(PeftTextTrainerOptions options)
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 5));
        return (ml, data, PeftTrainerFixture.Fit(ml, data, options).Model);
    }

    /// <summary>As <see cref="Train"/>, on a copy of the tiny backbone that the test may change or delete.</summary>
    private static (string Backbone, MLContext Ml, IDataView Data, ITransformer Model) TrainOnACopyOfTheBackbone(PeftTextTrainerOptions options)
    {
        options.BackboneDirectory = PeftTrainerFixture.CopyOfTinyBackbone();
        var (ml, data, model) = Train(options);
        return (options.BackboneDirectory, ml, data, model);
    }

    public static IEnumerable<object[]> Trainers =>
    [
        [PeftTrainerFixture.Msplora(2)],
        [PeftTrainerFixture.Lora(2)],
        [PeftTrainerFixture.Dora(2)],
        [PeftTrainerFixture.LoraSquared(3)],
        [PeftTrainerFixture.AdaLora(3)],
        [PeftTrainerFixture.OnEveryLinear(PeftTrainerFixture.Msplora(2))],
        [WithBias(PeftTrainerFixture.Lora(2), LoraBias.All)],
        [WithBias(PeftTrainerFixture.Dora(2), LoraBias.LoraOnly)],
        [WithBias(PeftTrainerFixture.AdaLora(3), LoraBias.All)],
        [WithBias(PeftTrainerFixture.Msplora(2), LoraBias.All)],
        [WithBias(PeftTrainerFixture.LoraSquared(3), LoraBias.LoraOnly)],
        [PeftTrainerFixture.Tiny(new FullFineTuningOptions { MaxEpochs = 2, LearningRate = 1e-3, BatchSize = 16 })],
    ];

    private static PeftTextTrainerOptions WithBias(PeftTextTrainerOptions options, LoraBias bias)
    {
        switch (options)
        {
            case LoraOptions lora: lora.Bias = bias; break;
            case MsploraOptions msplora: msplora.Bias = bias; break;
            case SvdOptions svd: svd.Bias = bias; break;
        }
        return options;
    }

    [TestMethod]
    [DynamicData(nameof(Trainers))]
    public void LoadedModelGivesIdenticalPredictionsInAFreshContext(PeftTextTrainerOptions options)
    {
        var (ml, data, model) = Train(options);
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        Assert.IsLessThan(2_000_000L, new FileInfo(zip).Length, "adapters + head + tokenizer, no backbone");

        var expected = PeftTrainerFixture.Scores(model, data, ml);
        var before = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model).Predict(new() { Sentence1 = "owl fox yak" });

        // Loading builds the modules without drawing their initial values, so every parameter must come from the zip
        // or the backbone; neither loading nor scoring draws from libtorch's generator (a training on another thread
        // draws its dropout masks from it).
        TorchSharp.torch.manual_seed(5);
        using var undisturbed = TorchSharp.torch.rand(8);
        TorchSharp.torch.manual_seed(5);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out var schema);
        var scores = PeftTrainerFixture.Scores(loaded, data, fresh);
        var after = fresh.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(loaded).Predict(new() { Sentence1 = "owl fox yak" });
        using var afterwards = TorchSharp.torch.rand(8);
        Assert.IsTrue(undisturbed.equal(afterwards).all().item<bool>(), "loading or scoring drew from libtorch's random generator");

        PeftTrainerFixture.AssertSameScores(expected, scores);
        Assert.AreEqual(before.PredictedLabel, after.PredictedLabel);
        CollectionAssert.AreEqual(before.Score, after.Score);
        Assert.IsNotNull(schema.GetColumnOrNull("Sentence1"));
        var trained = ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single().Parameters;
        var reloaded = ((TransformerChain<ITransformer>)loaded).OfType<PeftTextTransformer>().Single().Parameters;
        CollectionAssert.AreEqual(trained.Ranks.ToList(), reloaded.Ranks.ToList(), "pruned ranks survive the round trip");
        if (options is SvdOptions svd)
            Assert.AreEqual(svd.TargetRank * 8, trained.RankBudget, "the final budget is reached: target rank × 8 matrices");
    }

    /// <summary>LoadSettings choose the loaded model's precision and device: bf16 and fp16 scores agree with fp32 to their
    /// rounding but are not the same numbers (and on a CPU without native instructions for them, ML.NET's log says they
    /// are slow); a CUDA device that is not there is a clear error.</summary>
    [TestMethod]
    public void LoadSettingsChooseThePrecisionAndDevice()
    {
        var (ml, data, model) = Train(PeftTrainerFixture.Lora(2));
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        var fp32 = PeftTrainerFixture.Scores(new MLContext().Model.Load(zip, out _), data, ml);
        try
        {
            foreach (var (precision, dtype, name) in new[] { (ComputePrecision.BFloat16, TorchSharp.torch.ScalarType.BFloat16, "bf16"),
                         (ComputePrecision.Float16, TorchSharp.torch.ScalarType.Float16, "fp16") })
            {
                LoadSettings.Precision = precision;
                var loading = new MLContext();
                var warnings = PeftTrainerFixture.LogMessages(loading, Microsoft.ML.Runtime.ChannelMessageKind.Warning);
                var lower = PeftTrainerFixture.Scores(loading.Model.Load(zip, out _), data, ml);
                bool slowHere = ComputeSelection.SlowPrecisionWarning(TorchSharp.torch.CPU, dtype) is not null;
                Assert.AreEqual(slowHere, warnings.Any(w => w.Contains($"without native {name}")), $"a warning where this CPU lacks {name}");
                double largest = fp32.Zip(lower).SelectMany(r => r.First.Zip(r.Second, (a, b) => Math.Abs(a - b))).Max();
                Assert.IsTrue(largest is > 0 and < 0.05, $"{name}: largest score difference {largest}");
            }
            if (!TorchSharp.torch.cuda.is_available())
            {
                LoadSettings.Device = ComputeDevice.Cuda;
                var e = Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _));
                StringAssert.Contains(Flatten(e), "no CUDA device");
            }
        }
        finally
        {
            LoadSettings.Precision = ComputePrecision.Auto;
            LoadSettings.Device = ComputeDevice.Auto;
        }
    }

    /// <summary>MLContext.GpuDeviceId and FallbackToCpu, as ML.NET's own GPU components read them, for training and
    /// loading: a GPU that is not there is a clear error, or the CPU with FallbackToCpu; unset, the options decide.</summary>
    [TestMethod]
    public void MlContextGpuSettingsPickTheDevice()
    {
        // The first device id this machine does not have.
        int missingGpu = TorchSharp.torch.cuda.is_available() ? TorchSharp.torch.cuda.device_count() : 0;
        var ml = new MLContext(seed: 1) { GpuDeviceId = missingGpu };
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 5));
        var e = Assert.Throws<Exception>(() => PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Lora(1)));
        StringAssert.Contains(Flatten(e), $"MLContext.GpuDeviceId is {missingGpu}");
        StringAssert.Contains(Flatten(e), "FallbackToCpu");

        ml.FallbackToCpu = true;
        var model = PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Lora(1)).Model;
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext { GpuDeviceId = missingGpu }.Model.Load(zip, out _))), "GpuDeviceId");
        var fallback = new MLContext { GpuDeviceId = missingGpu, FallbackToCpu = true };
        PeftTrainerFixture.AssertSameScores(PeftTrainerFixture.Scores(model, data, ml), PeftTrainerFixture.Scores(fallback.Model.Load(zip, out _), data, fallback));
    }

    /// <summary>With EmbedBackbone the zip loads with the backbone directory gone, from a file or a stream. The model
    /// holds the backbone as an open file, not in memory: it still saves after the directory is deleted (Unix), a
    /// loaded model re-saves it from the temporary copy of its zip's entry (which is unlinked at once, so no file is
    /// left in the temporary folder), and a backbone file changed since training is an error naming it.</summary>
    [TestMethod]
    public void EmbeddedBackboneMakesTheZipSelfContained()
    {
        var options = PeftTrainerFixture.Msplora(2);
        options.EmbedBackbone = true;
        var (backbone, ml, data, model) = TrainOnACopyOfTheBackbone(options);
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        using var saved = new MemoryStream(); // as a service that keeps its models in blob storage saves and loads them
        ml.Model.Save(model, data.Schema, saved);
        Directory.Delete(backbone, recursive: true);
        var afterDelete = TempZip();
        if (!OperatingSystem.IsWindows()) ml.Model.Save(model, data.Schema, afterDelete);

        var expected = PeftTrainerFixture.Scores(model, data, ml);
        string[] TemporaryCopies() => Directory.GetFiles(Path.GetTempPath(), "mlnetpeft-backbone-*");
        var copiesBefore = TemporaryCopies();
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        CollectionAssert.AreEquivalent(copiesBefore, TemporaryCopies(), "the entry's temporary copy is unlinked");
        PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(loaded, data, fresh));
        var fromStream = new MLContext();
        PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(fromStream.Model.Load(new MemoryStream(saved.ToArray()), out _), data, fromStream));
        var resaved = TempZip();
        fresh.Model.Save(loaded, data.Schema, resaved);
        foreach (var again in OperatingSystem.IsWindows() ? [resaved] : new[] { resaved, afterDelete })
        {
            var context = new MLContext();
            PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(context.Model.Load(again, out _), data, context));
        }

        var (changed, changedMl, _, changedModel) = TrainOnACopyOfTheBackbone(options);
        var weightsFile = Path.Combine(changed, "model.safetensors");
        using (var file = new FileStream(weightsFile, FileMode.Open, FileAccess.ReadWrite)) // one weight's byte changed in place
        {
            file.Position = file.Length - 1;
            int last = file.ReadByte();
            file.Position = file.Length - 1;
            file.WriteByte((byte)(last ^ 0xFF));
        }
        var error = Assert.Throws<Exception>(() => changedMl.Model.Save(changedModel, data.Schema, TempZip()));
        StringAssert.Contains(Flatten(error), weightsFile);
        StringAssert.Contains(Flatten(error), "changed after training");
    }

    /// <summary>The entries of weights (the embedded backbone, the trained ones) are stored, not deflated (weights barely
    /// compress, and deflating them was most of a save), also in a zip written to a stream that cannot seek (an upload);
    /// a zip whose entries are all deflated, as every zip saved before 2026-12-08 has them, loads with the same scores; one
    /// with a byte of the backbone changed, or without the backbone, is named damaged.</summary>
    [TestMethod]
    public void WeightEntriesAreStoredAndDeflatedOnesStillLoad()
    {
        var options = PeftTrainerFixture.Lora(1);
        options.EmbedBackbone = true;
        var (_, ml, data, model) = TrainOnACopyOfTheBackbone(options);
        var expected = PeftTrainerFixture.Scores(model, data, ml);
        using var upload = new MemoryStream();
        ml.Model.Save(model, data.Schema, new ForwardOnly(upload));
        var stored = upload.ToArray();
        var deflated = ZipCopies.WithEntry(stored, "Backbone.safetensors", bytes => bytes, System.IO.Compression.CompressionLevel.Optimal);
        foreach (var (zip, isStored) in new[] { (stored, true), (deflated, false) })
        {
            using (var archive = new System.IO.Compression.ZipArchive(new MemoryStream(zip)))
                foreach (var name in new[] { "/Backbone.safetensors", "/Adapters.safetensors" })
                {
                    var entry = archive.Entries.Single(e => e.FullName.EndsWith(name, StringComparison.Ordinal));
                    Assert.AreEqual(isStored, entry.CompressedLength == entry.Length, $"{name}: {entry.CompressedLength} of {entry.Length} bytes");
                }
            var fresh = new MLContext();
            PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(fresh.Model.Load(new MemoryStream(zip), out _), data, fresh),
                isStored ? "stored: " : "deflated: ");
        }
        var damaged = ZipCopies.WithEntry(stored, "Backbone.safetensors", bytes => { bytes[bytes.Length / 2] ^= 0x20; return bytes; });
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(new MemoryStream(damaged), out _))),
            "model zip Backbone.safetensors (the embedded backbone) does not have the SHA-256 the model was trained on: the zip is damaged");
        // Lost (its entry's name damaged), it was looked for in the backbone directory instead, which a deployed
        // application does not have: now the zip is named damaged, although that directory is still here.
        var lost = ZipCopies.WithEntry(stored, "Backbone.safetensors", _ => null);
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(new MemoryStream(lost), out _))),
            "model zip lacks Backbone.safetensors, which it was saved with: the zip is damaged");
    }

    /// <summary>A stream that writes forward only, as an upload does.</summary>
    private sealed class ForwardOnly(Stream inner) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    }

    /// <summary>A backbone file replaced (renamed over, as a re-download does) while a model with EmbedBackbone trains:
    /// the zip embeds the file the model trained on, which it holds open from before the first step.</summary>
    [TestMethod]
    public void AnEmbeddedBackboneReplacedWhileTrainingIsTheOneTrainedOn()
    {
        if (OperatingSystem.IsWindows()) Assert.Inconclusive("renaming over an open file is Unix's");
        var options = PeftTrainerFixture.Msplora(2);
        options.EmbedBackbone = true;
        options.BackboneDirectory = PeftTrainerFixture.CopyOfTinyBackbone();
        var weightsFile = Path.Combine(options.BackboneDirectory, "model.safetensors");
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 5));
        bool replaced = false;
        ml.Log += (_, e) =>
        {
            if (replaced || !e.Message.Contains(" step ", StringComparison.Ordinal)) return;
            var other = File.ReadAllBytes(weightsFile);
            other[^1] ^= 0xFF;
            File.WriteAllBytes(weightsFile + ".new", other);
            File.Move(weightsFile + ".new", weightsFile, overwrite: true);
            replaced = true;
        };
        var model = PeftTrainerFixture.Fit(ml, data, options).Model;
        Assert.IsTrue(replaced, "replaced during training");
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        var fresh = new MLContext();
        PeftTrainerFixture.AssertSameScores(PeftTrainerFixture.Scores(model, data, ml), PeftTrainerFixture.Scores(fresh.Model.Load(zip, out _), data, fresh));
    }

    [TestMethod]
    public void WrongOrMissingBackboneIsAClearErrorAndAnOverrideFindsTheRightOne()
    {
        var (backbone, ml, data, model) = TrainOnACopyOfTheBackbone(PeftTrainerFixture.Msplora(1));
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        var expected = PeftTrainerFixture.Scores(model, data, ml);

        // Same file name, other weights: the fingerprint tells them apart.
        File.AppendAllText(Path.Combine(backbone, "model.safetensors"), " ");
        var e = Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _));
        var message = Flatten(e);
        StringAssert.Contains(message, "SHA-256");
        StringAssert.Contains(message, BackboneLocator.EnvironmentVariable);

        var good = PeftTrainerFixture.CopyOfTinyBackbone();
        try
        {
            BackboneLocator.OverrideDirectory = good;
            var fresh = new MLContext();
            PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(fresh.Model.Load(zip, out _), data, fresh));
        }
        finally { BackboneLocator.OverrideDirectory = null; }

        try
        {
            Environment.SetEnvironmentVariable(BackboneLocator.EnvironmentVariable, good);
            var fresh = new MLContext();
            PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(fresh.Model.Load(zip, out _), data, fresh));
        }
        finally { Environment.SetEnvironmentVariable(BackboneLocator.EnvironmentVariable, null); }

        Directory.Delete(backbone, recursive: true);
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _))), "no such backbone was found");
    }

    [TestMethod]
    public void TransformerReportsItsParametersAndSurvivesSaveWithoutLabelNames()
    {
        var ml = new MLContext(seed: 1);
        // A label that is a key without text names (MapValueToKey over numbers keeps numeric names).
        var rows = ToyText.Rows(48, seed: 6).Select(r => new NumericLabelRow { Sentence1 = r.Sentence1, Label = r.Label.Length });
        var data = ml.Data.LoadFromEnumerable(rows);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1)));
        var model = pipeline.Fit(data);
        var peft = model.LastTransformer;
        Assert.AreEqual("msplora", peft.Parameters.Method);
        Assert.AreEqual((10L + 4) * 8 * 64, peft.Parameters.AdapterCount);
        StringAssert.Contains(peft.Parameters.ToString(), "query_global");

        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        PeftTrainerFixture.AssertSameScores(PeftTrainerFixture.Scores(model, data, ml), PeftTrainerFixture.Scores(loaded, data, fresh));
    }

    public sealed class NumericLabelRow
    {
        public string Sentence1 { get; set; } = "";
        public int Label { get; set; }
    }

    /// <summary>ML.NET's zip reader does not check entries' CRC: a zip damaged in a copy loaded and scored differently
    /// until each stream's SHA-256 was saved beside it.</summary>
    [TestMethod]
    public void ADamagedModelZipIsRefusedRatherThanScoredDifferently()
    {
        var (ml, data, model) = Train(PeftTrainerFixture.Lora(1));
        var zip = TempZip();
        ml.Model.Save(model, data.Schema, zip);
        var expected = PeftTrainerFixture.Scores(model, data, ml);
        var good = File.ReadAllBytes(zip);

        // One byte of one stream changed, in an otherwise valid zip: named.
        foreach (var stream in new[] { "Adapters.safetensors", "vocab.json", "merges.txt", "AddedTokens.json" })
        {
            File.WriteAllBytes(zip, ZipCopies.WithEntry(good, stream, bytes => { bytes[bytes.Length / 2] ^= 0x20; return bytes; }));
            StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _))),
                $"model zip {stream} does not have the SHA-256 it was saved with: the zip is damaged", stream);
        }

        // A stream lost (its entry's name damaged): AddedTokens.json, which zips saved before it lack, was read as no
        // tokens added rather than refused.
        foreach (var stream in new[] { "AddedTokens.json", "vocab.json" })
        {
            File.WriteAllBytes(zip, ZipCopies.WithEntry(good, stream, _ => null));
            StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _))), $"model zip lacks {stream}", stream);
        }

        // One letter of a class name changed in the transformer's own stream: it loaded and predicted "fNuit" until the
        // label values were checksummed too (model version 0x00010003).
        File.WriteAllBytes(zip, ZipCopies.WithTransformerStream(good, header =>
        {
            int at = System.Text.Encoding.Latin1.GetString(header).LastIndexOf("fruit", StringComparison.Ordinal);
            Assert.IsGreaterThan(0, at, "the class names are in the transformer's stream");
            header[at + 1] = (byte)'N';
            return header;
        }));
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _))),
            "model zip label values does not have the SHA-256 it was saved with");
        // A zip saved before that (0x00010002) loads as it did.
        File.WriteAllBytes(zip, ZipCopies.WithTransformerVersion(good, 0x00010002));
        var withoutLabelChecksum = new MLContext();
        PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(withoutLabelChecksum.Model.Load(zip, out _), data, withoutLabelChecksum));

        // Bytes of the file itself changed, as a bad copy does: every copy either fails to load or scores as saved.
        var random = new Random(4);
        int refused = 0;
        for (int i = 0; i < 100; i++)
        {
            var bytes = (byte[])good.Clone();
            for (int n = random.Next(1, 4); n > 0; n--) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            File.WriteAllBytes(zip, bytes);
            ITransformer loaded;
            try { loaded = new MLContext().Model.Load(zip, out _); }
            catch (Exception) { refused++; continue; }
            var fresh = new MLContext();
            PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(loaded, data, fresh));
        }
        Assert.IsGreaterThan(50, refused);

        // Without its Checksums.json (an entry whose name was damaged, say) it is not read unchecked...
        var withoutChecksums = ZipCopies.WithEntry(good, "Checksums.json", _ => null);
        File.WriteAllBytes(zip, withoutChecksums);
        StringAssert.Contains(Flatten(Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _))), "model zip lacks its Checksums.json");

        // ...but a zip saved before the checksums (the transformer's header at model version 0x00010001) loads as it did.
        File.WriteAllBytes(zip, ZipCopies.WithTransformerVersion(withoutChecksums, 0x00010001));
        var old = new MLContext();
        PeftTrainerFixture.AssertSameScores(expected, PeftTrainerFixture.Scores(old.Model.Load(zip, out _), data, old));
    }

    private static string Flatten(Exception e) => e.InnerException is null ? e.Message : e.Message + " | " + Flatten(e.InnerException);

    /// <summary>Trains, saves and loads in a fresh context: the transformer as a deployed app has it.</summary>
    private static PeftTextTransformer Reloaded(PeftTextTrainerOptions options)
    {
        var (ml, _, model) = Train(options);
        var zip = TempZip();
        ml.Model.Save(model, null, zip);
        return ((TransformerChain<ITransformer>)new MLContext(seed: 3).Model.Load(zip, out _)).OfType<PeftTextTransformer>().Single();
    }

    /// <summary>The exported model's logits on the fixture's rows give the transformer's scores (1e-5).</summary>
    private static void AssertScoresAs(PeftTextTransformer transformer, PeftModel exported)
    {
        var rows = AdapterTests.Rows();
        var expected = transformer.Predict(rows);
        using var noGrad = TorchSharp.torch.no_grad();
        exported.Train(false);
        var actual = exported.Forward(AdapterTests.Ids, AdapterTests.Mask).softmax(-1);
        for (int r = 0; r < rows.Count; r++)
            for (int c = 0; c < expected[r].Length; c++)
                Assert.AreEqual(expected[r][c], actual[r, c].item<float>(), 1e-5, $"row {r}, class {c}");
    }

    [TestMethod]
    public void AReloadedModelExportsAPeftAdapterThatScoresAsItDoes()
    {
        var loaded = Reloaded(PeftTrainerFixture.Msplora(2));
        var dir = TestFolders.Create("peft-adapter");
        loaded.SavePeftAdapter(dir); // its adapters are merged for prediction: the export reads the factors
        using var imported = AdapterTests.Tiny(PeftLoraImport.ReadConfig(dir));
        imported.LoadPeftAdapter(dir);
        AssertScoresAs(loaded, imported);
    }

    /// <summary>An adapter model whose biases trained: the zip holds them (moved from the backbone's), and a reloaded model
    /// exports them to PEFT (bias "all" or "lora_only", read back by the import; AdaLoRA also in PEFT's AdaLoRA form) and
    /// into a plain checkpoint, each scoring as it does.</summary>
    [TestMethod]
    [DataRow("lora", LoraBias.All, 33)]
    [DataRow("lora", LoraBias.LoraOnly, 8)]
    [DataRow("adalora", LoraBias.LoraOnly, 8)]
    [DataRow("msplora", LoraBias.All, 33)]
    [DataRow("lorasquared", LoraBias.LoraOnly, 8)]
    public void TrainedBiasesReloadAndExportToPeftAndToAPlainCheckpoint(string method, LoraBias bias, int count)
    {
        PeftTextTrainerOptions options = method switch
        {
            "lora" => PeftTrainerFixture.Lora(2),
            "msplora" => PeftTrainerFixture.Msplora(2),
            "lorasquared" => PeftTrainerFixture.LoraSquared(3),
            _ => PeftTrainerFixture.AdaLora(3),
        };
        var loaded = Reloaded(WithBias(options, bias));
        var backbone = SafeTensors.Load(Path.Combine(TestData.TinyBackbone, "model.safetensors"));
        var biases = loaded.TrainableState().Where(kv => kv.Key.StartsWith("roberta.", StringComparison.Ordinal)).ToList();
        Assert.HasCount(count, biases);
        foreach (var (name, value) in biases.Where(b => b.Key.Contains(".query.")))
            Assert.IsGreaterThan(1e-4, value.sub(backbone[name.Replace(".base_layer.", ".")]).abs().max().item<float>(), $"{name} trained");
        StringAssert.Contains(loaded.Parameters.ToString(), $"{count} biases");

        var adapter = TestFolders.Create("peft-bias-adapter");
        loaded.SavePeftAdapter(adapter);
        using (var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json"))))
            Assert.AreEqual(bias == LoraBias.All ? "all" : "lora_only", json.RootElement.GetProperty("bias").GetString());
        using var imported = AdapterTests.Tiny(PeftLoraImport.ReadConfig(adapter));
        imported.LoadPeftAdapter(adapter);
        AssertScoresAs(loaded, imported);
        if (method == "adalora")
        {
            var adaLora = TestFolders.Create("peft-bias-adalora");
            loaded.SavePeftAdapter(adaLora, PeftAdapterFormat.AdaLora);
            var config = MlNetPeft.Adapters.LoraSquared.PeftAdaLoraImport.ReadConfig(adaLora);
            Assert.AreEqual(bias, config.Bias);
            using var importedAdaLora = AdapterTests.Tiny(config);
            importedAdaLora.LoadPeftAdapter(adaLora);
            AssertScoresAs(loaded, importedAdaLora);
        }

        var merged = TestFolders.Create("merged-bias");
        loaded.SaveMergedCheckpoint(merged);
        var checkpoint = new CheckpointDirectory(merged);
        using var plain = PeftModel.Create(checkpoint.LoadConfig(), 3, new FullFineTuningConfig(), SafeTensors.Load(checkpoint.WeightsFile), merged, loadHead: true);
        AssertScoresAs(loaded, plain);
    }

    [TestMethod]
    public void AReloadedModelSavesAPlainCheckpointThatScoresAsItDoes()
    {
        var loaded = Reloaded(PeftTrainerFixture.AdaLora(2));
        var dir = TestFolders.Create("merged-checkpoint");
        loaded.SaveMergedCheckpoint(dir);

        // A checkpoint directory like any other: config, tokenizer, weights with a head.
        var checkpoint = new CheckpointDirectory(dir);
        var config = checkpoint.LoadConfig();
        Assert.AreEqual(loaded.Info.Backbone, config);
        CollectionAssert.AreEqual(RobertaTokenizer.FromDirectory(TestData.TinyBackbone).Encode("apple zebra 1234", null, 16),
            checkpoint.LoadTokenizer().Encode("apple zebra 1234", null, 16), "the same tokenizer");
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(checkpoint.ConfigFile));
        // Class names in key order: MapValueToKey numbers them by first appearance.
        var names = ToyText.Rows(64, seed: 5).Select(r => r.Label).Distinct().ToArray();
        CollectionAssert.AreEqual(names, json.RootElement.GetProperty("id2label").EnumerateObject().Select(p => p.Value.GetString()).ToArray());
        Assert.AreEqual("RobertaForSequenceClassification", json.RootElement.GetProperty("architectures")[0].GetString());

        using var plain = PeftModel.Create(config, 3, new FullFineTuningConfig(), SafeTensors.Load(checkpoint.WeightsFile), dir, loadHead: true);
        AssertScoresAs(loaded, plain);
    }
    /// <summary>A merged checkpoint written into the backbone directory the model trained on would replace the weights
    /// its zips refer to: refused, naming the directory, with the backbone untouched.</summary>
    [TestMethod]
    public void AMergedCheckpointIsNotWrittenOverItsOwnBackbone()
    {
        var (backbone, _, _, model) = TrainOnACopyOfTheBackbone(PeftTrainerFixture.Lora(1));
        var peft = ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        var weights = File.ReadAllBytes(Path.Combine(backbone, "model.safetensors"));
        var error = Assert.ThrowsExactly<ArgumentException>(() => peft.SaveMergedCheckpoint(backbone + Path.DirectorySeparatorChar));
        StringAssert.Contains(error.Message, backbone);
        CollectionAssert.AreEqual(weights, File.ReadAllBytes(Path.Combine(backbone, "model.safetensors")));
        peft.SaveMergedCheckpoint(Path.Combine(backbone, "merged")); // a folder inside it is another directory
    }

    /// <summary>An export that fails part-way (here the disk is full for its last file) over an earlier export leaves
    /// that earlier export's files as they were, and no partial file: neither a truncated weights file nor an old config
    /// beside new weights. The error names the file. Once the disk has room, the same export writes every file.</summary>
    [TestMethod]
    [DataRow("merged", "tokenizer.json")]
    [DataRow("peft", "adapter_config.json")]
    public void AnExportThatFailsLeavesTheEarlierOneAsItWas(string export, string lastFile)
    {
        if (!File.Exists("/dev/full")) Assert.Inconclusive("needs /dev/full (Linux)");
        var loaded = Reloaded(PeftTrainerFixture.Lora(2));
        Action<string> save = export == "merged" ? loaded.SaveMergedCheckpoint : loaded.SavePeftAdapter;
        var dir = TestFolders.Create("failed-export");
        string[] files = export == "merged"
            ? ["model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer.json"]
            : ["adapter_model.safetensors", "adapter_config.json"];
        foreach (var file in files) File.WriteAllText(Path.Combine(dir, file), $"earlier {file}");
        var partial = Path.Combine(dir, lastFile + ".tmp");
        File.CreateSymbolicLink(partial, "/dev/full"); // every write fails as on a full disk

        var error = Assert.ThrowsExactly<IOException>(() => save(dir));
        StringAssert.Contains(error.Message, $"'{partial}'");
        foreach (var file in files) Assert.AreEqual($"earlier {file}", File.ReadAllText(Path.Combine(dir, file)), file);
        CollectionAssert.AreEquivalent(files, Directory.GetFiles(dir).Select(Path.GetFileName).ToArray(), "no partial file left");

        save(dir);
        CollectionAssert.AreEquivalent(files, Directory.GetFiles(dir).Select(Path.GetFileName).ToArray());
        foreach (var file in files) Assert.AreNotEqual($"earlier {file}", File.ReadAllText(Path.Combine(dir, file)), file);
    }
}
