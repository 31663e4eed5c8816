namespace MlNetPeft.Adapters;

/// <summary>Which of the backbone's biases train beside the adapters: PEFT's <c>bias</c> setting (its LoRA and AdaLoRA
/// configs have it; MSPLoRA and LoRA² take it too).</summary>
public enum LoraBias
{
    /// <summary>None: the backbone stays frozen (PEFT's "none", its default).</summary>
    None,
    /// <summary>Every bias of the backbone: its Linears' and its LayerNorms' (PEFT's "all").</summary>
    All,
    /// <summary>The biases of the adapted projections alone (PEFT's "lora_only").</summary>
    LoraOnly,
}
