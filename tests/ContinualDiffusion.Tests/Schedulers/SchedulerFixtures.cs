using System.Text.Json;
using ContinualDiffusion.Runtime;
using ContinualDiffusion.Schedulers;
using ContinualDiffusion.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace ContinualDiffusion.Tests.Schedulers;

/// Reference configs and the fixture's fake-model sampling loop (reference.json tensors "sched.<name>.*").
internal static class SchedulerFixtures
{
    public static JsonElement SchedulersJson => Fixture.ReferenceJson.GetProperty("schedulers");

    /// reference.json schedulers.base_config: the config every fixture trajectory was built from.
    public static SchedulerConfig BaseConfig() =>
        SchedulerConfig.Parse(SchedulersJson.GetProperty("base_config").GetRawText(), "reference.json schedulers.base_config");

    public static int Steps(string fixtureName) => SchedulersJson.GetProperty(fixtureName).GetProperty("num_inference_steps").GetInt32();

    public static string Sd15ConfigPath => Path.Combine(Fixture.Root, "tests", "fixtures", "configs", "sd15", "scheduler_config.json");

    /// Runs `lat = latents_init; for k, t: mi = scale_model_input(lat, t); mo = 0.5*mi + (t/1000)*fixed_eps;
    /// lat = step(mo, t, lat)` and compares timesteps (exactly), init_noise_sigma, model inputs and latents at every
    /// step against sched.<fixtureName>.*. Returns the largest relative error seen.
    public static double AssertTrajectoryMatches(IScheduler scheduler, string fixtureName, ITestOutputHelper output)
    {
        using var scope = torch.NewDisposeScope();
        int steps = Steps(fixtureName);
        scheduler.SetTimesteps(steps);
        string p = $"sched.{fixtureName}.";

        AssertTimestepsEqual(scheduler.Timesteps, Fixture.Ref(p + "timesteps"));
        Assert.Equal(Fixture.Ref(p + "init_noise_sigma").item<float>(), (float)scheduler.InitNoiseSigma);

        var fixedEps = Fixture.Ref("sched.fixed_eps");
        var latents = Fixture.Ref("sched.base_noise").Times(scheduler.InitNoiseSigma);
        double worst = Fixture.RelError(latents, Fixture.Ref(p + "latents_init"));
        Fixture.AssertClose(latents, Fixture.Ref(p + "latents_init"), what: p + "latents_init");

        var expectedInputs = Fixture.Ref(p + "model_inputs");
        var expectedLatents = Fixture.Ref(p + "latents");
        for (int k = 0; k < steps; k++)
        {
            using var stepScope = torch.NewDisposeScope();
            var t = scheduler.Timesteps[k];
            var modelInput = scheduler.ScaleModelInput(latents, t);
            var modelOutput = modelInput.Times(0.5).Plus(fixedEps.Times(t.Value / 1000));
            var next = scheduler.Step(modelOutput, t, latents);

            double inputErr = Fixture.RelError(modelInput, expectedInputs[k]);
            double latentErr = Fixture.RelError(next, expectedLatents[k]);
            worst = Math.Max(worst, Math.Max(inputErr, latentErr));
            Assert.True(inputErr <= Fixture.ParityRelTol, $"{p}model_inputs[{k}] (t={t}): relative error {inputErr:E3}");
            Assert.True(latentErr <= Fixture.ParityRelTol, $"{p}latents[{k}] (t={t}): relative error {latentErr:E3}");
            latents = next.MoveToOuterDisposeScope();
        }
        output.WriteLine($"{fixtureName}: {steps} steps, max relative error {worst:E3}");
        return worst;
    }

    public static void AssertTimestepsEqual(IReadOnlyList<Timestep> actual, Tensor expected)
    {
        bool integer = expected.dtype == ScalarType.Int64;
        Assert.All(actual, t => Assert.Equal(integer, t.IsInteger));
        double[] want = integer
            ? expected.data<long>().ToArray().Select(v => (double)v).ToArray()
            : expected.data<float>().ToArray().Select(v => (double)v).ToArray();
        Assert.Equal(want, actual.Select(t => t.Value).ToArray());
    }

    public static void AssertSigmasEqual(IReadOnlyList<float> actual, Tensor expected, ITestOutputHelper output, string what)
    {
        using var a = torch.tensor(actual.ToArray());
        double err = Fixture.RelError(a, expected);
        output.WriteLine($"{what}: sigmas relative error {err:E3}");
        Fixture.AssertClose(a, expected, what: what);
    }
}
