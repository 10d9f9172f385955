using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Cli;

public class ShellTests
{
    [Fact]
    public void Doctor_reports_a_working_torch_and_the_patch_state()
    {
        var r = CliRunner.Run("doctor");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("TorchSharp       0.107.0", r.Stdout);
        Assert.Contains("tensor check     ok", r.Stdout);
        Assert.Matches("compat patch +(in effect|not needed|not applied)", r.Stdout);
    }

    [Fact]
    public void An_unknown_option_is_a_one_line_error_with_exit_code_2()
    {
        var r = CliRunner.Run("doctor", "--frobnicate");
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("--frobnicate", r.Stderr);
    }

    [Fact]
    public void A_bad_log_level_is_refused_naming_the_choices()
    {
        var r = CliRunner.Run("doctor", "--log-level", "loud");
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("loud", r.Stderr);
        Assert.Contains("debug", r.Stderr);
    }

    [Fact]
    public void Log_file_receives_json_lines()
    {
        var path = Path.Combine(Path.GetTempPath(), $"cdiff-log-{Guid.NewGuid():N}.jsonl");
        try
        {
            var r = CliRunner.Run("doctor", "--log-file", path);
            Assert.Equal(0, r.ExitCode);
            var lines = File.ReadAllLines(path);
            Assert.NotEmpty(lines);
            foreach (var line in lines) System.Text.Json.JsonDocument.Parse(line).Dispose();
            Assert.Contains(lines, l => l.Contains("\"@mt\""));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void The_real_executable_prints_its_version_and_returns_2_on_bad_usage()
    {
        var version = CliRunner.RunProcess("--version");
        Assert.Equal(0, version.ExitCode);
        Assert.StartsWith(typeof(ContinualDiffusion.InputException).Assembly.GetName().Version!.ToString(2), version.Stdout.Trim());
        var bad = CliRunner.RunProcess("no-such-command");
        Assert.Equal(2, bad.ExitCode);
    }
}
