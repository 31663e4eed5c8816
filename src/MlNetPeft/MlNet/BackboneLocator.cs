using MlNetPeft.Backbone;

namespace MlNetPeft.MlNet;

/// <summary>
/// Finds the backbone of a loaded model zip that does not embed it. Tried in order: <see cref="OverrideDirectory"/>,
/// the <c>MLNETPEFT_BACKBONE_DIR</c> environment variable, then the directory used at training time. A directory
/// is accepted only if its weights file (model.safetensors, or pytorch_model.bin) has the SHA-256 recorded at training time.
/// </summary>
public static class BackboneLocator
{
    /// <summary>Name of the environment variable that points at a backbone directory.</summary>
    public const string EnvironmentVariable = "MLNETPEFT_BACKBONE_DIR";

    /// <summary>Directory to try first when loading a model (e.g. where your app deploys roberta-base).</summary>
    public static string? OverrideDirectory { get; set; }

    internal static CheckpointDirectory Find(string trainedPath, string sha256)
    {
        var tried = new List<string>();
        var candidates = new[] { (OverrideDirectory, "BackboneLocator.OverrideDirectory"),
            (Environment.GetEnvironmentVariable(EnvironmentVariable), EnvironmentVariable), (trainedPath, "training-time path") };
        foreach (var (path, source) in candidates)
        {
            if (string.IsNullOrWhiteSpace(path)) continue;
            CheckpointDirectory dir;
            try { dir = new CheckpointDirectory(path); }
            catch (IOException e) { tried.Add($"{source} {path}: {e.Message}"); continue; }
            var found = dir.Fingerprint();
            if (found == sha256) return dir;
            tried.Add($"{source} {dir.Path}: {Path.GetFileName(dir.WeightsFile)} has SHA-256 {found}");
        }
        throw new InvalidOperationException(
            $"The model was trained on a backbone whose weights file has SHA-256 {sha256} (at {trainedPath}), and no such backbone was found. " +
            $"Tried: {string.Join("; ", tried)}. Point BackboneLocator.OverrideDirectory or the {EnvironmentVariable} environment variable " +
            "at that checkpoint directory, or train with EmbedBackbone = true for a self-contained zip.");
    }
}
