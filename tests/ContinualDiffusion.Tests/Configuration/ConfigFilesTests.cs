using ContinualDiffusion.Configuration;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;

namespace ContinualDiffusion.Tests.Configuration;

public class ConfigFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-cfg-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_shipped_training_defaults_load_and_equal_the_record_defaults()
    {
        var cfg = TrainingConfig.Load(Path.Combine(Fixture.Root, "configs", "train", "defaults.json"));
        // Every key but the per-method section: `cdiff train` without --config loads this file, library callers get
        // the record, and the two must train the same way.
        Assert.Equal(JsonConfig.Serialize(new TrainingConfig()), JsonConfig.Serialize(cfg with { Methods = null }));
        Assert.All(cfg.PromptTemplates, t => Assert.DoesNotContain("person", t));
    }

    [Fact]
    public void The_benchmark_training_options_ship_with_the_build_and_load()
    {
        var path = ContinualDiffusion.Benchmarking.BenchmarkOptions.DefaultTrainingConfigPath;
        Assert.True(File.Exists(path), path);
        var cfg = TrainingConfig.Load(path);
        // The values the README's benchmark section explains (λ on this model's scale, not SD's 1e8).
        Assert.Equal(100, cfg.Lambda); // the 5-task sweep's pick, confirmed on the reported seeds
        Assert.Equal(8, cfg.BatchSize);
        Assert.Equal(5e-2, cfg.TokenLearningRate, 12);
        Assert.Equal(["a photo of {}"], cfg.PromptTemplates); // the base model's own caption form
        Assert.Equal(800, cfg.Steps);
        Assert.Equal(2e-3, cfg.LearningRate, 12);
        // Per-method values chosen by probes on validation seed 100 (README, "Methods on the testbed").
        Assert.Equal(3e-3, cfg.ForMethod("custom-diffusion").LearningRate, 12);
        Assert.Equal(3e-3, cfg.ForMethod("custom-diffusion-merge").LearningRate, 12);
        Assert.Equal(1e-4, cfg.ForMethod("anchored-lora").Lambda, 12);
        Assert.Equal((800, 5e-2), (cfg.ForMethod("textual-inversion").Steps, cfg.ForMethod("textual-inversion").TokenLearningRate));
    }

    [Fact]
    public void An_unknown_key_is_rejected_naming_the_key_and_the_file()
    {
        var path = Path.Combine(_dir, "train.json");
        File.WriteAllText(path, "{ \"steps\": 10, \"learning_rat\": 0.1 }");
        var e = Assert.Throws<ConfigException>(() => TrainingConfig.Load(path));
        Assert.Contains("learning_rat", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData("{ \"rank\": 0 }", "rank")]
    [InlineData("{ \"lambda\": -1 }", "lambda")]
    [InlineData("{ \"steps\": 0 }", "steps")]
    [InlineData("{ \"method\": \"ewc\" }", "method")]
    [InlineData("{ \"steps\": \"many\" }", "steps")]
    public void Invalid_values_are_rejected_naming_the_key(string json, string key)
    {
        var path = Path.Combine(_dir, "bad.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<ConfigException>(() => TrainingConfig.Load(path));
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void Diffusers_bookkeeping_keys_are_ignored()
    {
        var cfg = JsonConfig.Parse<TrainingConfig>("{ \"_class_name\": \"x\", \"steps\": 7 }", "inline");
        Assert.Equal(7, cfg.Steps);
    }

    [Fact]
    public void A_methods_section_sets_that_methods_defaults_and_options_given_win()
    {
        var cfg = JsonConfig.Parse<TrainingConfig>("""
            { "steps": 100, "learning_rate": 0.002, "methods": { "textual-inversion": { "steps": 900, "token_learning_rate": 0.1 }, "custom-diffusion": { "learning_rate": 0.0001 } } }
            """, "inline").Validated("inline");
        var ti = cfg.ForMethod("textual-inversion");
        Assert.Equal(("textual-inversion", 900, 0.1), (ti.Method, ti.Steps, ti.TokenLearningRate));
        var cd = cfg.ForMethod("custom-diffusion");
        Assert.Equal((100, 1e-4), (cd.Steps, cd.LearningRate));
        Assert.Equal((100, 0.002), (cfg.ForMethod("clora").Steps, cfg.ForMethod("clora").LearningRate));
        var lambda = JsonConfig.Parse<TrainingConfig>("""{ "lambda": 1, "methods": { "anchored-lora": { "lambda": 0.0001 } } }""", "inline").WithMethodLambda("clora", 10);
        Assert.Equal((10.0, 1e-4), (lambda.ForMethod("clora").Lambda, lambda.ForMethod("anchored-lora").Lambda)); // benchmark --lambda is clora's
        var pinned = cfg.Pinned(new MethodDefaults { Steps = 50 });
        Assert.Equal(50, pinned.ForMethod("textual-inversion").Steps);        // the option wins over the section
        Assert.Equal(0.1, pinned.ForMethod("textual-inversion").TokenLearningRate); // what it does not set stays
    }

    [Theory]
    [InlineData("{ \"methods\": { \"ewc\": { \"steps\": 5 } } }", "methods.ewc")]
    [InlineData("{ \"methods\": { \"textual-inversion\": { \"rank\": 4 } } }", "methods.textual-inversion.rank")]
    [InlineData("{ \"methods\": { \"lora\": { \"lambda\": 4 } } }", "methods.lora.lambda")]
    [InlineData("{ \"methods\": { \"magmax\": { \"steps\": 0 } } }", "methods.magmax.steps")]
    [InlineData("{ \"methods\": { \"magmax\": null } }", "methods.magmax")]
    public void A_bad_methods_section_is_rejected_naming_the_key(string json, string key)
    {
        var path = Path.Combine(_dir, "bad-methods.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<ConfigException>(() => TrainingConfig.Load(path));
        Assert.Contains(key, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void The_shipped_defaults_carry_the_papers_settings_for_textual_inversion_and_custom_diffusion()
    {
        var cfg = TrainingConfig.LoadDefaults();
        Assert.Equal((5000, 5e-3), (cfg.ForMethod("textual-inversion").Steps, cfg.ForMethod("textual-inversion").TokenLearningRate));
        Assert.Equal((250, 1e-5), (cfg.ForMethod("custom-diffusion").Steps, cfg.ForMethod("custom-diffusion").LearningRate));
        Assert.Equal((250, 1e-5), (cfg.ForMethod("custom-diffusion-merge").Steps, cfg.ForMethod("custom-diffusion-merge").LearningRate));
        Assert.Equal(new TrainingConfig().Steps, cfg.ForMethod("clora").Steps);
    }
}
