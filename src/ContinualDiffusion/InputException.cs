namespace ContinualDiffusion;

/// Bad input from the user (a file, folder, option or config key): the CLI prints the message as one line
/// and exits with code 2. The message names the offending file/option/key and what was expected.
public class InputException(string message) : Exception(message);
