using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Gradient checkpointing of one encoder block (HF's <c>gradient_checkpointing_enable()</c>, PyTorch's reentrant
/// <c>checkpoint</c>): the forward runs the block without recording a graph and keeps only its input; the backward runs
/// it again with gradients and back-propagates through that. Activation memory falls from all of a block's
/// intermediates (attention scores, the 4×-wide feed-forward, dropout masks) to its input, for about one more forward
/// of compute. The second run draws the same dropout masks: the CPU generator's state is saved and restored; CUDA's
/// generator state is out of TorchSharp's reach, so on CUDA the block reseeds it, both times, from a seed drawn on the
/// CPU generator. The replay runs after the forward has released its stacked adapter factors (see
/// Adapters/StackedLowRank), so each projection adds its own update: the same numbers, dropout masks included, from
/// the parameters themselves, so the replay's backward stays inside the block.
/// </summary>
internal sealed class GradientCheckpoint : autograd.SingleTensorFunction<GradientCheckpoint>
{
    private static readonly object Lock = new();
    private static Exception? _failure;     // of a replay, raised by ThrowIfReplayFailed
    private static Tensor? _handedOver;     // the input gradient returned last

    public override string Name => nameof(GradientCheckpoint);

    /// <summary>For checks on a device (the bench's parity command): while set, every replay compares its output with
    /// the first run's (kept for that) and records the largest difference relative to the output's largest value.
    /// A replay that drew other dropout masks differs by a few percent (2e-2 on the parity fixture), one that drew the
    /// same by rounding only.</summary>
    internal static bool VerifyReplays { get; set; }

    /// <summary>Replays compared while <see cref="VerifyReplays"/> was set, and their largest relative difference.</summary>
    internal static (int Count, double LargestDifference) VerifiedReplays { get; private set; }

    internal static void ResetVerifiedReplays() => VerifiedReplays = (0, 0);

    /// <summary><paramref name="block"/>(<paramref name="hidden"/>), recorded as one autograd node.</summary>
    public static Tensor Run(Func<Tensor, Tensor> block, Tensor hidden)
    {
        // The node must record even when the input needs no gradient (the first block of a frozen backbone), or the
        // block's adapters would get none; a zero-size leaf that does makes it record (HF's enable_input_require_grads).
        using var anchor = empty(0, device: hidden.device, requires_grad: true);
        return apply(hidden, anchor, new Replay(block, hidden.device_type == DeviceType.CUDA));
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (hidden, replay) = ((Tensor)vars[0], (Replay)vars[2]);
        ctx.save_for_backward([hidden]);
        ctx.save_data(nameof(Replay), replay);
        ctx.save_data(nameof(hidden.requires_grad), hidden.requires_grad);
        return replay.First(hidden);
    }

    /// <summary>
    /// Called by libtorch's autograd engine from native code, where a .NET exception cannot pass (the process would
    /// end): a replay that fails (out of memory on the second run, say) is kept, the block's gradients are left out,
    /// and <see cref="ThrowIfReplayFailed"/> raises it once the backward has returned.
    /// </summary>
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        try
        {
            return Backward(ctx, gradOutput);
        }
        catch (Exception e)
        {
            lock (Lock) _failure ??= e;
            return [null!, null!, null!];
        }
    }

    /// <summary>Throws the first failure of a replay since the last call (call after every backward that may have run
    /// checkpointed blocks).</summary>
    public static void ThrowIfReplayFailed()
    {
        Exception? failure;
        lock (Lock) (failure, _failure) = (_failure, null);
        if (failure is not null)
            throw new InvalidOperationException(
                $"Gradient checkpointing: running an encoder block again in the backward failed ({failure.Message}); " +
                "this step's gradients are incomplete. Lower BatchSize or MaxSequenceLength if memory ran out.", failure);
    }

    private static List<Tensor> Backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var replay = (Replay)ctx.get_data(nameof(Replay));
        bool inputNeedsGrad = (bool)ctx.get_data(nameof(Tensor.requires_grad));
        using var scope = NewDisposeScope();
        var saved = ctx.get_saved_variables()[0];
        var input = inputNeedsGrad ? saved.detach().requires_grad_(true) : saved;
        using (enable_grad())
        {
            var output = replay.Again(input);
            if (output.requires_grad) autograd.backward([output], [gradOutput]);
        }
        var inputGrad = inputNeedsGrad ? input.grad?.DetachFromDisposeScope() : null;
        HandOver(inputGrad);
        return [inputGrad!, null!, null!];
    }

    /// <summary>The autograd engine keeps its own reference to a returned gradient, and on CUDA calls this on its own
    /// thread, outside any dispose scope: the handle returned last is freed when the next is returned.</summary>
    private static void HandOver(Tensor? gradient)
    {
        lock (Lock)
        {
            _handedOver?.Dispose();
            _handedOver = gradient;
        }
    }

    /// <summary>A block and the random state its first run started from.</summary>
    private sealed class Replay(Func<Tensor, Tensor> block, bool onCuda)
    {
        private Tensor? _cpuState;
        private long _cudaSeed;
        private Tensor? _firstOutput; // only while VerifyReplays is set

        public Tensor First(Tensor hidden)
        {
            if (onCuda)
            {
                using var draw = randint(0, long.MaxValue, [1], dtype: ScalarType.Int64);
                _cudaSeed = draw.item<long>();
                cuda.manual_seed_all(_cudaSeed); // all: the block may run on a GPU other than the current one
            }
            _cpuState = random.get_rng_state(); // in the step's scope, which the backward runs within
            // The block's intermediates are freed now, not with the step's scope: that is the memory saved.
            using var scope = NewDisposeScope();
            var output = block(hidden).MoveToOuterDisposeScope();
            if (VerifyReplays) _firstOutput = output.detach().clone().MoveToOuterDisposeScope();
            return output;
        }

        /// <summary>The block again from the same random state; the generators then go on from where they were.</summary>
        public Tensor Again(Tensor hidden)
        {
            using var now = random.get_rng_state();
            random.set_rng_state(_cpuState!);
            if (onCuda) cuda.manual_seed_all(_cudaSeed);
            try
            {
                var output = block(hidden);
                if (_firstOutput is not null) Compare(output);
                return output;
            }
            finally
            {
                random.set_rng_state(now);
            }
        }

        private void Compare(Tensor output)
        {
            using var _ = no_grad();
            using var first = _firstOutput!.to(ScalarType.Float32);
            using var again = output.detach().to(ScalarType.Float32);
            double difference = again.sub(first).abs().max().item<float>() / Math.Max(first.abs().max().item<float>(), 1e-12);
            lock (Lock) VerifiedReplays = (VerifiedReplays.Count + 1, Math.Max(VerifiedReplays.LargestDifference, difference));
        }
    }
}
