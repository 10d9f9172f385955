using ContinualDiffusion.Configuration;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Tests.Training;

/// diffusers' schedules (diffusers.optimization: get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
/// get_cosine_schedule_with_warmup with num_cycles 0.5) at LambdaLR's step s = optimizer steps already taken, worked
/// out by hand for 10 steps with 2 warm-up steps (tolerance 1e-12).
public class LrSchedulerTests
{
    [Theory]
    [InlineData("constant", 0, new[] { 1.0, 1, 1, 1, 1, 1, 1, 1, 1, 1 })]
    [InlineData("constant_with_warmup", 2, new[] { 0.0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1 })]
    [InlineData("linear", 2, new[] { 0.0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125 })]
    [InlineData("linear", 0, new[] { 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1 })]
    // ½(1 + cos(π k/8)) for k = 0..7 after the warm-up
    [InlineData("cosine", 2, new[] { 0.0, 0.5, 1, 0.96193976625564337, 0.85355339059327373, 0.69134171618254492, 0.5, 0.30865828381745508, 0.14644660940672627, 0.038060233744356631 })]
    public void Factors_per_step_are_diffusers_schedules(string name, int warmup, double[] expected)
    {
        var factors = Enumerable.Range(1, 10).Select(step => LrScheduler.Factor(name, step, 10, warmup)).ToArray();
        Assert.Equal(expected.Length, factors.Length);
        for (int i = 0; i < factors.Length; i++) Assert.True(Math.Abs(factors[i] - expected[i]) < 1e-12, $"{name} step {i + 1}: {factors[i]} vs {expected[i]}");
    }

    /// The defaults of the three new keys leave the config's JSON as it was before they existed (checkpoint identities
    /// and benchmark caches are keyed on it), whether absent or given explicitly.
    [Fact]
    public void Default_schedule_and_accumulation_serialize_as_a_config_without_them()
    {
        var plain = JsonConfig.Serialize(new TrainingConfig().Validated("x"));
        var explicitDefaults = new TrainingConfig { LrScheduler = "constant", LrWarmupSteps = 0, GradientAccumulationSteps = 1, NoiseOffset = 0 }.Validated("x");
        Assert.Equal(plain, JsonConfig.Serialize(explicitDefaults));
        Assert.Equal(plain, JsonConfig.Serialize(new TrainingConfig { LrScheduler = "constant_with_warmup" }.Validated("x"))); // no warm-up: constant
        Assert.DoesNotContain("lr_scheduler", plain);
        var set = JsonConfig.Serialize(new TrainingConfig { LrScheduler = "cosine", LrWarmupSteps = 5, GradientAccumulationSteps = 4 }.Validated("x"));
        Assert.Contains("\"lr_scheduler\": \"cosine\"", set);
        Assert.Contains("\"lr_warmup_steps\": 5", set);
        Assert.Contains("\"gradient_accumulation_steps\": 4", set);
        var back = JsonConfig.Parse<TrainingConfig>(set, "x");
        Assert.Equal(("cosine", 5, 4), (back.LrScheduler, back.LrWarmupSteps, back.GradientAccumulationSteps));
    }

    [Theory]
    [InlineData("{ \"lr_scheduler\": \"step\" }", "'lr_scheduler' must be one of constant, constant_with_warmup, linear, cosine")]
    [InlineData("{ \"lr_warmup_steps\": 10 }", "'lr_warmup_steps' must be 0 with the constant schedule (set lr_scheduler to")]
    [InlineData("{ \"lr_scheduler\": \"linear\", \"lr_warmup_steps\": -1 }", "'lr_warmup_steps' must be >= 0")]
    [InlineData("{ \"gradient_accumulation_steps\": 0 }", "'gradient_accumulation_steps' must be > 0")]
    public void Bad_schedule_or_accumulation_keys_are_refused_naming_the_file_and_key(string json, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => JsonConfig.Parse<TrainingConfig>(json, "train.json").Validated("train.json"));
        Assert.StartsWith("train.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
