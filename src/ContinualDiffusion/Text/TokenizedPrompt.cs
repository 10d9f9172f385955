namespace ContinualDiffusion.Text;

/// One prompt encoded the way StableDiffusionPipeline calls the tokenizer
/// (padding="max_length", max_length=model_max_length, truncation=True).
/// `InputIds`: bos, the prompt's tokens, eos, then pad ids, length model_max_length (77).
/// `AttentionMask`: 1 for bos..eos, 0 for padding (SD's text encoder does not use it).
/// `UnpaddedLength`: number of ids before the padding (bos and eos included).
/// `Truncated`: the prompt had more than model_max_length - 2 tokens; `DroppedTokenCount` of them were cut
/// from the end. The caller decides how to warn.
public sealed record TokenizedPrompt(long[] InputIds, long[] AttentionMask, int UnpaddedLength, bool Truncated, int DroppedTokenCount);
