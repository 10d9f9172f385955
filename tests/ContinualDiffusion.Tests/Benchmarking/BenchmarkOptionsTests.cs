using ContinualDiffusion.Benchmarking;
using ContinualDiffusion.Tests.Support;

namespace ContinualDiffusion.Tests.Benchmarking;

public class BenchmarkOptionsTests
{
    private static BenchmarkOptions Valid() => new() { ModelPath = "model", OutDir = "out", ClassifierPath = "c.safetensors" };

    [Theory]
    [InlineData("methods", "--methods")]
    [InlineData("seeds", "--seeds")]
    [InlineData("tasks", "--tasks")]
    [InlineData("images", "--images-per-concept")]
    [InlineData("samples", "--samples")]
    [InlineData("steps", "--sample-steps")]
    [InlineData("guidance", "--guidance")]
    [InlineData("rescale", "--guidance-rescale")]
    [InlineData("concepts", "--concepts")]
    [InlineData("tasks-of-concepts", "--tasks")]
    [InlineData("lambdas", "--lambdas")]
    [InlineData("base-prompt", "--base-prompt")]
    [InlineData("train-steps", "--steps")]
    public void Invalid_options_are_refused_naming_the_option(string what, string option)
    {
        var o = what switch
        {
            "methods" => Valid() with { Methods = ["clora", "ewc"] },
            "seeds" => Valid() with { Seeds = [1, 1] },
            "tasks" => Valid() with { Tasks = 6 },
            "images" => Valid() with { ImagesPerConcept = 0 },
            "samples" => Valid() with { Samples = 1 },
            "steps" => Valid() with { SampleSteps = 0 },
            "guidance" => Valid() with { Guidance = double.NaN },
            "rescale" => Valid() with { GuidanceRescale = 1.5 },
            "concepts" => Valid() with { Concepts = [2, 2] },
            "tasks-of-concepts" => Valid() with { Concepts = [2, 4], Tasks = 3 },
            "lambdas" => Valid() with { Lambdas = [-1] },
            "base-prompt" => Valid() with { BasePromptTemplate = "a photo" },
            "train-steps" => Valid() with { Training = new() { Steps = 0 } },
            _ => throw new ArgumentException(what),
        };
        var e = Assert.ThrowsAny<InputException>(() => o.Validated()); // a ConfigException is an InputException
        Assert.StartsWith(option, e.Message);
    }

    [Fact]
    public void Methods_run_in_report_order_with_one_sweep_entry_per_lambda()
    {
        var specs = (Valid() with { Lambdas = [1e6, 1e7] }).Validated().MethodSpecs();
        Assert.Equal(["clora", "clora-l1e6", "clora-l1e7", "lora", "reference"], specs.Select(s => s.Label));
        Assert.Equal(1e7, specs[2].Lambda);
        Assert.Equal(0, specs.Single(s => s.Label == "lora").Lambda);
        Assert.False(specs.Single(s => s.Label == "reference").Continual);
    }

    [Fact]
    public void Continual_methods_merge_every_learned_adapter_the_reference_only_its_own()
    {
        var clora = new MethodSpec("clora", "clora", 1e8, Continual: true);
        var reference = new MethodSpec("reference", "lora", double.NaN, Continual: false);
        Assert.Equal([0, 1, 2], clora.AdaptersFor(afterTask: 2, concept: 0));
        Assert.Equal([0], reference.AdaptersFor(afterTask: 2, concept: 0));
        Assert.Equal([2], reference.AdaptersFor(afterTask: 4, concept: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => reference.AdaptersFor(afterTask: 1, concept: 2));
    }

    [Fact]
    public void A_bad_list_on_the_command_line_is_one_line_naming_the_option()
    {
        var r = CliRunner.Run("benchmark", "--model", Fixture.SdTiny, "--out", Path.GetTempPath(), "--seeds", "0,x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--seeds", r.Stderr);
        var m = CliRunner.Run("benchmark", "--model", Fixture.SdTiny, "--out", Path.GetTempPath(), "--methods", "clora,foo");
        Assert.Equal(2, m.ExitCode);
        Assert.Contains("--methods: unknown method 'foo'", m.Stderr);
    }
}
