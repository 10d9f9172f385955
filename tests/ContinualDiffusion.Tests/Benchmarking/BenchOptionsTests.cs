using System.Diagnostics;
using ContinualDiffusion.Benchmarks;

namespace ContinualDiffusion.Tests.Benchmarking;

/// The benchmark tool's option parsing (benchmarks/.../BenchOptions): a typo or a bad value must stop the benchmark
/// with one line naming the option, never fall back to a default and measure the wrong thing.
public class BenchOptionsTests
{
    [Fact]
    public void Given_values_are_read_and_missing_ones_take_their_defaults()
    {
        var o = BenchOptions.Parse("train", ["--steps", "60", "--ranks", "4, 16", "--lr", "4e-3", "--model", "m"], "steps", "ranks", "batch", "lr", "model");
        Assert.Equal(60, o.Int("steps", 3));
        Assert.Equal(1, o.Int("batch", 1));
        Assert.Equal([4, 16], o.Ints("ranks", "8"));
        Assert.Equal(4e-3, o.Positive("lr", 1));
        Assert.Equal("m", o.Required("model"));
        Assert.True(o.Has("model"));
        Assert.Null(o.Get("batch"));
    }

    [Theory]
    [InlineData(new[] { "--step", "60" }, "train: unknown option --step (known: --steps, --batch)")]
    [InlineData(new[] { "--steps" }, "train: --steps needs a value")]
    [InlineData(new[] { "--steps", "--batch", "8" }, "train: --steps needs a value")]
    [InlineData(new[] { "--steps", "1", "--steps", "2" }, "train: --steps given twice")]
    [InlineData(new[] { "steps", "1" }, "train: expected an option (--name value), got 'steps'")]
    public void Malformed_command_lines_are_refused_naming_the_option(string[] args, string message)
    {
        var e = Assert.Throws<BenchUsageException>(() => BenchOptions.Parse("train", args, "steps", "batch"));
        Assert.Equal(message, e.Message);
    }

    [Theory]
    [InlineData("x")]
    [InlineData("0")]
    [InlineData("2.5")]
    [InlineData("99999999999")]
    public void A_count_that_is_not_a_positive_integer_is_refused(string value)
    {
        var o = BenchOptions.Parse("onednn-conv", ["--trials", value], "trials");
        var e = Assert.Throws<BenchUsageException>(() => o.Int("trials", 30));
        Assert.Equal($"onednn-conv: --trials: expected an integer ≥ 1, got '{value}'", e.Message);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("4,x")]
    public void Numbers_that_must_be_positive_and_finite_are_checked(string value)
    {
        var o = BenchOptions.Parse("prompts", ["--guidance", value], "guidance");
        Assert.Throws<BenchUsageException>(() => o.Positives("guidance", "4"));
    }

    [Fact]
    public void Bounds_are_inclusive_and_named_in_the_message()
    {
        var o = BenchOptions.Parse("prompts", ["--guidance", "0,7.5", "--classes", "0,9", "--labels", "3,10", "--seed", "-5"], "guidance", "classes", "labels", "seed");
        Assert.Equal([0, 7.5], o.Positives("guidance", "4", zeroAllowed: true)); // unguided sampling is a meaningful baseline
        Assert.Equal([0, 9], o.Ints("classes", "", min: 0, max: 9));
        Assert.Equal("prompts: --labels: expected an integer from 0 to 9, got '10'",
            Assert.Throws<BenchUsageException>(() => o.Ints("labels", "", min: 0, max: 9)).Message);
        Assert.Equal(-5, o.Int("seed", 0, min: int.MinValue)); // a single dash is a number, not an option
    }

    [Fact]
    public void Choices_and_required_options_name_what_was_expected()
    {
        var o = BenchOptions.Parse("train", ["--onednn", "maybe"], "onednn", "model");
        Assert.Equal("train: --onednn: expected on or off, got 'maybe'", Assert.Throws<BenchUsageException>(() => o.OneOf("onednn", "on", "on", "off")).Message);
        Assert.Equal("train: --model is required", Assert.Throws<BenchUsageException>(() => o.Required("model")).Message);
    }

    /// The tool itself: a bad option is one line on stderr and exit code 2, before any model is built.
    [Theory]
    [InlineData("onednn-conv", "--trials", "x", "bench onednn-conv: --trials: expected an integer ≥ 1, got 'x'")]
    [InlineData("train", "--step", "100", "bench train: unknown option --step (known: --model-config, --tokenizer, --model, --resolution, --batch, --steps, --ranks, --onednn)")]
    [InlineData("memory", "--only", "both", "bench memory: --only: expected all or train or sample, got 'both'")]
    public void The_benchmark_tool_exits_with_code_2_and_one_line(string command, string option, string value, string expected)
    {
        var (code, stdout, stderr) = RunBenchmarkTool(command, option, value);
        Assert.Equal(2, code);
        Assert.Equal(expected, stderr.TrimEnd('\n'));
        Assert.Equal("", stdout);
    }

    /// The built tool (copied next to the tests) as a separate process; tests run synchronously (TensorScopePerTest).
    private static (int Code, string Stdout, string Stderr) RunBenchmarkTool(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ContinualDiffusion.Benchmarks.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(entireProcessTree: true); throw new TimeoutException("the benchmark tool did not exit within 60 s"); }
        return (p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}
