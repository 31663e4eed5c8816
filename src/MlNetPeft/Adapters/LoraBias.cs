namespace MlNetPeft.Adapters;

/// <summary>Which of the backbone's biases train beside LoRA or AdaLoRA adapters: PEFT's <c>bias</c> setting.</summary>
public enum LoraBias
{
    /// <summary>None: the backbone stays frozen (PEFT's "none", its default).</summary>
    None,
    /// <summary>Every bias of the backbone: its Linears' and its LayerNorms' (PEFT's "all").</summary>
    All,
    /// <summary>The biases of the adapted projections alone (PEFT's "lora_only").</summary>
    LoraOnly,
}
