namespace MlNetPeft.Training;

/// <summary>
/// Trainings in one process take turns, from seeding to their last step. libtorch keeps one random generator per
/// device for the whole process, and a training draws from it for its initial adapters and head, every dropout mask,
/// and gradient checkpointing's replays (which rewind it). Two trainings stepping at once would each draw from the
/// other's sequence: neither model would be the one its <c>Seed</c> gives, and a checkpointed block could replay
/// with other dropout masks than its forward drew, which silently gives wrong gradients. Loading a model zip and
/// scoring draw nothing (see Backbone/RandomInit) and never wait.
/// </summary>
internal static class TrainingTurns
{
    private static readonly object Gate = new();

    /// <summary>Waits until no other training in this process holds the turn and takes it; dispose to hand it on.
    /// While waiting it calls <paramref name="checkAlive"/> (ML.NET's cancellation) every 100 ms.</summary>
    public static IDisposable Take(Action checkAlive, Action<string> log)
    {
        if (!Monitor.TryEnter(Gate))
        {
            log("Another training is running in this process; this one takes its turn when that one ends " +
                "(trainings share libtorch's random generators, so they run one at a time).");
            do checkAlive();
            while (!Monitor.TryEnter(Gate, 100));
        }
        return new Turn();
    }

    /// <summary>Held by the thread that took it (Fit runs on one thread); Monitor lets that thread take it again, so a
    /// training started from another's progress callback runs inside it rather than waiting for itself.</summary>
    private sealed class Turn : IDisposable
    {
        private bool _handedOn;

        public void Dispose()
        {
            if (_handedOn) return;
            _handedOn = true;
            Monitor.Exit(Gate);
        }
    }
}
