using System.Globalization;
using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Models;

/// One-line ConfigExceptions for diffusers config values we do not implement ("file: key 'x' = v is not supported").
internal static class ConfigRules
{
    public static void Require(bool ok, string source, string key, object? actual, string expected)
    {
        if (!ok) throw new ConfigException($"{source}: key '{key}' = {Show(actual)} is not supported (expected {expected})");
    }

    public static void RequireNull(string source, string key, object? actual) =>
        Require(actual is null, source, key, actual, "null");

    public static void RequirePositive(string source, string key, int value) =>
        Require(value > 0, source, key, value, "a positive integer");

    public static void RequireAll(IEnumerable<int> values, Func<int, bool> ok, string source, string key, string expected)
    {
        foreach (var v in values) Require(ok(v), source, key, v, expected);
    }

    private static string Show(object? v) => v switch
    {
        null => "null",
        string s => $"'{s}'",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        System.Collections.IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Select(Show)) + "]",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "?",
    };
}
