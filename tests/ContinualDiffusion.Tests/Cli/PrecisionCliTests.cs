using ContinualDiffusion.Checkpoints;
using ContinualDiffusion.Tests.Support;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Cli;

/// `--device`, `--dtype` and `--vae-fp32` on train, sample and benchmark (device also on pretrain and classify).
public class PrecisionCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-precision-cli-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_bf16_task_writes_a_float32_adapter_and_samples_with_a_float32_vae()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "p1"), 3, new Rgb24(200, 40, 40));
        var t = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "3", "--rank", "2",
            "--checkpoint-every", "0", "--dtype", "bf16", "--device", "cpu");
        Assert.True(t.ExitCode == 0, t.Stderr);
        var adapter = Directory.GetFiles(Path.Combine(run, "adapters")).Single();
        using (var f = SafeTensorsFile.Open(adapter))
            Assert.All(f.Tensors.Values, e => Assert.Equal("F32", e.DType));

        var s = CliRunner.Run("sample", "--run", run, "--prompt", "a photo of <v1>", "--steps", "2", "--seed", "3", "--out", Path.Combine(_dir, "out"),
            "--dtype", "bf16", "--vae-fp32");
        Assert.True(s.ExitCode == 0, s.Stderr);
        Assert.Single(Directory.GetFiles(Path.Combine(_dir, "out"), "*.png"));
    }

    [Theory]
    [InlineData("pretrain --out OUT --device cuda", "--device cuda: this cdiff is the CPU build")]
    [InlineData("classify pretrain --out OUT --device cuda:0", "--device cuda:0: this cdiff is the CPU build")]
    [InlineData("classify train --run OUT --task 1 --classes 0,1 --device gpu", "--device gpu: expected cpu, cuda or cuda:N")]
    [InlineData("classify eval --run OUT --device cuda", "--device cuda: this cdiff is the CPU build")]
    [InlineData("classify benchmark --out OUT --device cuda", "--device cuda: this cdiff is the CPU build")]
    [InlineData("benchmark --model MODEL --out OUT --dtype fp16", "--dtype fp16: not on the CPU")]
    [InlineData("benchmark --model MODEL --out OUT --device cuda", "--device cuda: this cdiff is the CPU build")]
    [InlineData("benchmark --model MODEL --out OUT --vae-fp32", "--vae-fp32: the VAE is float32 already")]
    public void Every_command_with_device_refuses_what_this_build_cannot_do(string command, string expected)
    {
        var args = command.Split(' ').Select(a => a.Replace("MODEL", Fixture.SdTiny).Replace("OUT", Path.Combine(_dir, "never"))).ToArray();
        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 2, $"{command}: exit {r.ExitCode} {r.Stderr}");
        Assert.Contains(expected, Assert.Single(r.Stderr.Trim().Split('\n')));
        Assert.False(Directory.Exists(Path.Combine(_dir, "never")));
    }

    [Theory]
    [InlineData("--device cuda", "--device cuda: this cdiff is the CPU build", "TorchBackend=cuda")]
    [InlineData("--device cuda:1", "--device cuda:1: this cdiff is the CPU build")]
    [InlineData("--device tpu", "--device tpu: expected cpu, cuda or cuda:N")]
    [InlineData("--dtype fp16", "--dtype fp16: not on the CPU", "bf16")]
    [InlineData("--dtype fp8", "--dtype fp8: expected one of fp32, bf16, fp16")]
    [InlineData("--vae-fp32", "--vae-fp32: the VAE is float32 already")]
    public void Device_and_dtype_mistakes_exit_2_with_one_line(string options, params string[] expected)
    {
        foreach (var command in new[] { "sample --model MODEL --prompt x --steps 1", "train --task 1 --images IMAGES --model MODEL --run RUN --steps 1" })
        {
            var args = $"{command} {options}".Split(' ')
                .Select(a => a.Replace("MODEL", Fixture.SdTiny).Replace("IMAGES", _dir).Replace("RUN", Path.Combine(_dir, "never"))).ToArray();
            var r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 2, $"{string.Join(' ', args)}: exit {r.ExitCode} {r.Stderr}");
            var line = Assert.Single(r.Stderr.Trim().Split('\n'));
            foreach (var e in expected) Assert.Contains(e, line);
            Assert.False(Directory.Exists(Path.Combine(_dir, "never")));
        }
    }
}
