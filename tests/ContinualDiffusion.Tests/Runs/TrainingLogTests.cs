using System.Globalization;
using System.Text.Json;
using ContinualDiffusion.Runs;
using ContinualDiffusion.Tests.Support;
using ContinualDiffusion.Training;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Runs;

/// `logs/task-NNN.csv`: one row per step, written while training, kept up to the checkpoint on a resume, replaced on a
/// fresh start, and in place only once the task is committed.
public class TrainingLogTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cdiff-log-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Train_writes_a_row_per_step_with_the_scheduled_rates_and_the_final_loss()
    {
        var run = Path.Combine(_dir, "run");
        var images = TestImages.WriteFolder(Path.Combine(_dir, "imgs"), 2, new Rgb24(200, 40, 40));
        var t = CliRunner.Run("train", "--task", "1", "--images", images, "--model", Fixture.SdTiny, "--run", run, "--steps", "4", "--rank", "2",
            "--checkpoint-every", "0", "--lr", "0.001", "--token-lr", "0.01", "--lr-scheduler", "cosine", "--lr-warmup-steps", "2");
        Assert.True(t.ExitCode == 0, t.Stderr);
        var path = Path.Combine(run, "logs", "task-001.csv");
        Assert.False(Directory.Exists(Path.Combine(run, "checkpoints", "task-001"))); // nor its in-progress log
        var lines = File.ReadAllLines(path);
        Assert.Equal(TrainingLog.Header, lines[0]);
        var rows = lines[1..].Select(l => l.Split(',')).ToList();
        Assert.Equal(["1", "2", "3", "4"], rows.Select(r => r[0]));
        for (int k = 1; k <= 4; k++)
        {
            double factor = LrScheduler.Factor("cosine", k, 4, 2);
            Assert.Equal(0.001 * factor, double.Parse(rows[k - 1][5], CultureInfo.InvariantCulture), 15);
            Assert.Equal(0.01 * factor, double.Parse(rows[k - 1][6], CultureInfo.InvariantCulture), 15);
            Assert.True(double.Parse(rows[k - 1][4], CultureInfo.InvariantCulture) > 0, "a gradient norm");
            Assert.Equal("1", rows[k - 1][8]);
        }
        Assert.NotEqual(rows[0][5], rows[1][5]); // the warm-up moves the rate
        double finalLoss = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "manifest.json"))).RootElement.GetProperty("tasks")[0].GetProperty("final_loss").GetDouble();
        Assert.Equal(finalLoss, double.Parse(rows[3][1], CultureInfo.InvariantCulture));
    }

    [Fact]
    public void A_resume_keeps_the_rows_up_to_the_checkpoint_and_a_fresh_start_drops_them()
    {
        var path = Path.Combine(_dir, "logs", "task-002.csv");
        var partial = Path.Combine(_dir, "checkpoints", "task-002", "log.csv");
        var config = new TrainingConfig { LearningRate = 1e-3, TokenLearningRate = 1e-2 };
        static TrainStepReport Step(int s) => new(s, 4, 0.5 / s, 0.5 / s, 0, 0.1, GradNorm: 2, LrFactor: 1);
        using (var log = TrainingLog.Open(partial, config, resumedAt: null))
            foreach (var s in new[] { 1, 2, 3 }) log.Append(Step(s));
        File.AppendAllText(partial, "4,0.1,0.1,0"); // a row cut short by a kill
        Assert.False(File.Exists(path)); // not committed

        using (var log = TrainingLog.Open(partial, config, resumedAt: 2))
        {
            Assert.Equal(["1", "2"], File.ReadAllLines(log.PartialPath)[1..].Select(l => l.Split(',')[0]));
            log.Append(Step(3));
            log.Append(Step(4));
            log.Commit(path);
        }
        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(path)[1..].Select(l => l.Split(',')[0]));
        Assert.Equal("1,0.5,0.5,0,2,0.001,0.01,0.1000,1", File.ReadAllLines(path)[1]);
        Assert.False(File.Exists(partial));

        using (var log = TrainingLog.Open(partial, config, resumedAt: null)) log.Append(Step(1));
        Assert.Equal(2, File.ReadAllLines(partial).Length);
        Assert.Equal(5, File.ReadAllLines(path).Length); // the committed log is untouched until the retrained task commits
    }
}
