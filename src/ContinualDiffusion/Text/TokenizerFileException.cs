namespace ContinualDiffusion.Text;

/// A tokenizer folder whose files are missing or malformed; the message names the file (and line or key).
public sealed class TokenizerFileException(string message) : InputException(message);
