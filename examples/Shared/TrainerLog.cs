using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MlNetPeft.Examples;

/// <summary>Prints what a trainer writes to ML.NET's log: its warnings (e.g. a precision this machine only emulates)
/// and, when asked, its progress.</summary>
public static class TrainerLog
{
    public static void Print(MLContext ml, string sourcePrefix, bool progress)
    {
        ml.Log += (_, e) =>
        {
            if (!e.Source.StartsWith(sourcePrefix, StringComparison.Ordinal)) return;
            if (e.Kind == ChannelMessageKind.Warning || (progress && e.Kind == ChannelMessageKind.Info))
                Console.WriteLine("  " + e.Message);
        };
    }
}
