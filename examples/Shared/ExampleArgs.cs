using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Examples;

/// <summary>Command-line options shared by the examples.</summary>
public sealed record ExampleArgs
{
    public required string Backbone { get; init; }
    public required string DataDirectory { get; init; }
    public int MaxTrainRows { get; init; }
    public int MaxDevRows { get; init; }
    public int Epochs { get; init; }
    public double LearningRate { get; init; }
    public required string ModelPath { get; init; }
    /// <summary>Backbone precision for training (Auto: fp32 on CPU, bf16 on CUDA, fp16 on GPUs without bf16 tensor cores).</summary>
    public ComputePrecision Precision { get; init; }
    /// <summary>Where to also write the model for Python (a PEFT adapter and a merged HF checkpoint), or null.</summary>
    public string? ExportDirectory { get; init; }
    /// <summary>Where training saves its state each epoch and resumes from after an interruption (--state DIR), or null.</summary>
    public string? StateDirectory { get; init; }

    /// <summary>
    /// Saves the model to ModelPath and loads it back in a fresh MLContext, as a deployed app would; returns the engine
    /// that app would predict with. With --export DIR, also writes the loaded model for Python: DIR/peft-adapter (PEFT
    /// LoRA adapter, for PeftModel.from_pretrained on the backbone) and DIR/hf-checkpoint (adapters merged, for
    /// AutoModelForSequenceClassification.from_pretrained).
    /// </summary>
    public PredictionEngine<TRow, TPrediction> SaveAndReload<TRow, TPrediction>(MLContext ml, ITransformer model, DataViewSchema schema)
        where TRow : class where TPrediction : class, new()
    {
        ml.Model.Save(model, schema, ModelPath);
        Console.WriteLine($"Saved {ModelPath} ({new FileInfo(ModelPath).Length / 1024} KiB)");
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(ModelPath, out _);
        if (ExportDirectory is not null)
        {
            var peft = loaded as PeftTextTransformer ?? ((TransformerChain<ITransformer>)loaded).OfType<PeftTextTransformer>().Single();
            string adapter = Path.Combine(ExportDirectory, "peft-adapter"), checkpoint = Path.Combine(ExportDirectory, "hf-checkpoint");
            peft.SavePeftAdapter(adapter);
            peft.SaveMergedCheckpoint(checkpoint);
            Console.WriteLine($"Exported for Python: {adapter} and {checkpoint}");
        }
        return fresh.Model.CreatePredictionEngine<TRow, TPrediction>(loaded);
    }

    /// <summary>The repository folder holding models/ and data/, found above the running program.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "models", "roberta-mini")) && Directory.Exists(Path.Combine(dir.FullName, "data")))
                return dir.FullName;
        throw new DirectoryNotFoundException("models/roberta-mini not found above " + AppContext.BaseDirectory + "; pass --backbone and --data");
    }

    /// <summary>An example's program: runs <paramref name="run"/> on the parsed options (exit code 0 when it reached its
    /// goal, 1 otherwise, or when a file could not be read or written); --help prints the options, and a bad option says
    /// what is wrong, then the options (exit 2).</summary>
    public static int Run(string[] args, string name, int trainRows, int epochs, Func<ExampleArgs, bool> run)
    {
        if (args.Any(a => a is "--help" or "-h"))
        {
            Console.WriteLine(Usage(name, trainRows, epochs));
            return 0;
        }
        ExampleArgs options;
        try { options = Parse(args, name, trainRows, epochs); }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            Console.Error.WriteLine($"{name}: {e.Message}{Environment.NewLine}{Environment.NewLine}{Usage(name, trainRows, epochs)}");
            return 2;
        }
        // Files and folders (a state directory in use or that cannot be written, a full disk): the message says it all.
        try { return run(options) ? 0 : 1; }
        catch (IOException e)
        {
            Console.Error.WriteLine($"{name}: {e.Message}");
            return 1;
        }
    }

    private static string Usage(string name, int trainRows, int epochs) => $"""
        Options (all optional):
          --backbone DIR         HF RoBERTa checkpoint directory (default: the repository's models/roberta-mini)
          --data DIR             folder holding glue/ (default: the repository's data/)
          --max-train-rows N     training rows to use (default {trainRows})
          --max-dev-rows N       dev rows to score (default: all)
          --epochs E             passes over the training rows (default {epochs})
          --learning-rate LR     peak adapter learning rate (default 2e-3, for roberta-mini)
          --precision P          backbone precision fp32, bf16 or fp16 (default: fp32 on the CPU; bf16 on CUDA, fp16 on pre-Ampere GPUs)
          --model PATH           where to save the model zip (default: {DefaultModelPath(name)})
          --export DIR           also write the model for Python: DIR/peft-adapter and DIR/hf-checkpoint
          --state DIR            save training state each epoch and resume from it after an interruption
        """;

    private static string DefaultModelPath(string name) => Path.Combine(Path.GetTempPath(), name + "-msplora.zip");

    /// <summary>Parses the options; the defaults are each example's recipe for the shipped roberta-mini. A bad option or
    /// value throws an ArgumentException (or the FormatException of a number that does not parse) naming it.</summary>
    public static ExampleArgs Parse(string[] args, string name, int trainRows, int epochs, double lr = 2e-3)
    {
        string? backbone = null, data = null, model = null, export = null, state = null;
        int devRows = 0;
        var precision = ComputePrecision.Auto;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            T Number<T>(Func<string, IFormatProvider, T> parse)
            {
                string option = args[i], text = Next();
                try { return parse(text, CultureInfo.InvariantCulture); }
                catch (FormatException) { throw new ArgumentException($"{option} takes a number, not '{text}'"); }
            }
            switch (args[i])
            {
                case "--backbone": backbone = Next(); break;
                case "--data": data = Next(); break;
                case "--model": model = Next(); break;
                case "--export": export = Next(); break;
                case "--state": state = Next(); break;
                case "--max-train-rows": trainRows = Number(int.Parse); break;
                case "--max-dev-rows": devRows = Number(int.Parse); break;
                case "--epochs": epochs = Number(int.Parse); break;
                case "--learning-rate": lr = Number(double.Parse); break;
                case "--precision":
                    precision = Next() switch
                    {
                        "fp32" => ComputePrecision.Float32,
                        "bf16" => ComputePrecision.BFloat16,
                        "fp16" => ComputePrecision.Float16,
                        var other => throw new ArgumentException($"--precision takes fp32, bf16 or fp16, not '{other}'"),
                    };
                    break;
                default: throw new ArgumentException($"unknown option {args[i]} (--help lists the options)");
            }
        }
        // The model is saved after training: a folder that is not there would fail only then.
        model ??= DefaultModelPath(name);
        if (Path.GetDirectoryName(Path.GetFullPath(model)) is { } folder && !Directory.Exists(folder))
            throw new ArgumentException($"--model {model}: the folder {folder} does not exist");
        if (backbone is null)
        {
            backbone = Path.Combine(RepositoryRoot(), "models", "roberta-mini");
            Console.WriteLine($"No --backbone given: using the small roberta-mini checkpoint shipped in the repository ({backbone}).");
            Console.WriteLine("It is weak (a few CPU hours of pretraining); pass --backbone /path/to/roberta-base for real accuracy.");
        }
        return new ExampleArgs
        {
            Backbone = backbone,
            DataDirectory = data ?? Path.Combine(RepositoryRoot(), "data"),
            MaxTrainRows = trainRows,
            MaxDevRows = devRows,
            Epochs = epochs,
            LearningRate = lr,
            Precision = precision,
            ModelPath = model,
            ExportDirectory = export,
            StateDirectory = state,
        };
    }
}
