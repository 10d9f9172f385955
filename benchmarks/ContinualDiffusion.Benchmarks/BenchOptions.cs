using System.Globalization;

namespace ContinualDiffusion.Benchmarks;

/// A benchmark's `--name value` pairs, checked against the names it knows: an unknown name (a typo that would
/// otherwise fall back to a default and measure the wrong thing), a name without a value, a name given twice or a
/// value of the wrong kind is a one-line BenchUsageException, which Program prints and turns into exit code 2.
internal sealed class BenchOptions
{
    private readonly string _command;
    private readonly Dictionary<string, string> _values;

    private BenchOptions(string command, Dictionary<string, string> values)
    {
        _command = command;
        _values = values;
    }

    /// `known`: the option names (without "--") this command reads.
    public static BenchOptions Parse(string command, string[] args, params string[] known)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i += 2)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
                throw new BenchUsageException($"{command}: expected an option (--name value), got '{arg}'");
            string name = arg[2..];
            if (!known.Contains(name))
                throw new BenchUsageException($"{command}: unknown option --{name} (known: {string.Join(", ", known.Select(k => "--" + k))})");
            if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                throw new BenchUsageException($"{command}: --{name} needs a value");
            if (!values.TryAdd(name, args[i + 1]))
                throw new BenchUsageException($"{command}: --{name} given twice");
        }
        return new BenchOptions(command, values);
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Text(string name, string fallback) => _values.GetValueOrDefault(name, fallback);

    public string Required(string name) =>
        _values.TryGetValue(name, out var v) ? v : throw new BenchUsageException($"{_command}: --{name} is required");

    public string OneOf(string name, string fallback, params string[] allowed)
    {
        string value = Text(name, fallback);
        return allowed.Contains(value) ? value
            : throw new BenchUsageException($"{_command}: --{name}: expected {string.Join(" or ", allowed)}, got '{value}'");
    }

    /// An integer in [`min`, `max`].
    public int Int(string name, int fallback, int min = 1, int max = int.MaxValue) =>
        _values.TryGetValue(name, out var v) ? ParseInt(name, v, min, max) : fallback;

    public long Long(string name, long fallback) =>
        !_values.TryGetValue(name, out var v) ? fallback
        : long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) ? l
        : throw new BenchUsageException($"{_command}: --{name}: expected an integer, got '{v}'");

    /// A finite number > 0 (≥ 0 with `zeroAllowed`).
    public double Positive(string name, double fallback, bool zeroAllowed = false) =>
        _values.TryGetValue(name, out var v) ? ParseNumber(name, v, zeroAllowed) : fallback;

    /// A comma-separated list of integers in [`min`, `max`], at least one.
    public int[] Ints(string name, string fallback, int min = 1, int max = int.MaxValue) =>
        Text(name, fallback).Split(',').Select(p => ParseInt(name, p.Trim(), min, max)).ToArray();

    /// A comma-separated list of finite numbers > 0 (≥ 0 with `zeroAllowed`), at least one.
    public double[] Positives(string name, string fallback, bool zeroAllowed = false) =>
        Text(name, fallback).Split(',').Select(p => ParseNumber(name, p.Trim(), zeroAllowed)).ToArray();

    private int ParseInt(string name, string text, int min, int max) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max ? n
        : throw new BenchUsageException($"{_command}: --{name}: expected an integer {(max == int.MaxValue ? $"≥ {min}" : $"from {min} to {max}")}, got '{text}'");

    private double ParseNumber(string name, string text, bool zeroAllowed) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) && (d > 0 || zeroAllowed && d == 0) ? d
        : throw new BenchUsageException($"{_command}: --{name}: expected a number {(zeroAllowed ? "≥" : ">")} 0, got '{text}'");
}

/// Bad benchmark arguments: Program prints the message on one line and exits with code 2.
internal sealed class BenchUsageException(string message) : Exception(message);
