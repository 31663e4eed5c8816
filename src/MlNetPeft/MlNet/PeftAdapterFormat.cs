namespace MlNetPeft.MlNet;

/// <summary>How <see cref="PeftTextTransformer.SavePeftAdapter(string, PeftAdapterFormat)"/> writes a model's adapters.</summary>
public enum PeftAdapterFormat
{
    /// <summary>A PEFT LoRA adapter, for every method: each projection's update is a sum of low-rank pairs, written as
    /// the one pair it equals (what every PEFT version loads and merges).</summary>
    Lora,
    /// <summary>A PEFT AdaLoRA adapter (AdaLoRA models only): the SVD factors, the kept singular values listed in
    /// rank_pattern, and the run's budget schedule; PEFT loads it as AdaLoRA, and so does
    /// <see cref="AdaLoraOptions.InitialPeftAdapter"/>.</summary>
    AdaLora,
}
