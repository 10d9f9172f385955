using ContinualDiffusion.Evaluation;
using ContinualDiffusion.Evaluation.Reporting;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Evaluation;

public sealed class ReportingTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"cdiff-report-{Guid.NewGuid():N}");

    public ReportingTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// Two methods × two seeds × three concepts. Per-run A and F (by hand):
    /// clora seed 1: A = (0.7+0.8+0.9)/3 = 0.8, F = ((0.9−0.7) + (0.9−0.8))/2 = 0.15
    /// clora seed 2: A = (0.9+0.7+0.5)/3 = 0.7, F = ((1.0−0.9) + (0.8−0.7))/2 = 0.10
    /// lora  seed 1: A = (0.1+0.2+0.9)/3 = 0.4, F = ((0.9−0.1) + (0.9−0.2))/2 = 0.75
    /// lora  seed 2: A = (0.2+0.4+1.0)/3 = 1.6/3, F = ((0.8−0.2) + (1.0−0.4))/2 = 0.60
    private static BenchmarkResults Example() => new()
    {
        Title = "Test benchmark",
        ConceptNames = ["<v1> = pullover", "<v2> = dress", "<v3> = sandal"],
        Config = new() { ["images_per_concept"] = "50", ["steps"] = "400", ["classifier_test_accuracy"] = "91.2%" },
        Runs =
        [
            Run("clora", 1e6, 1, [[0.9], [0.8, 0.9], [0.7, 0.8, 0.9]],
                mmd: [[0.1], [0.2, 0.1], [0.3, 0.1, 0.1]], after: 0.8, train: 600),
            Run("clora", 1e6, 2, [[1.0], [0.9, 0.8], [0.9, 0.7, 0.5]],
                mmd: [[0.1], [0.1, 0.1], [0.1, 0.1, 0.1]], after: 0.9, train: 660),
            Run("lora", 0, 1, [[0.9], [0.3, 0.9], [0.1, 0.2, 0.9]],
                mmd: [[0.1], [0.5, 0.1], [0.9, 0.6, 0.1]], after: 0.5, train: 500),
            Run("lora", 0, 2, [[0.8], [0.4, 1.0], [0.2, 0.4, 1.0]],
                mmd: [[0.2], [0.4, 0.1], [0.8, 0.5, 0.2]], after: 0.6, train: 520),
        ],
    };

    /// Base classes: before {0.9, 0.8} (mean 0.85), after {after, 0.8}.
    private static MethodRun Run(string method, double lambda, long seed, double[][] r, double[][] mmd, double after, double train) => new()
    {
        Method = method,
        Lambda = lambda,
        Seed = seed,
        R = r,
        Mmd = mmd,
        BaseClassAccuracyBefore = new() { ["t-shirt"] = 0.9, ["trouser"] = 0.8 },
        BaseClassAccuracyAfter = new() { ["t-shirt"] = after, ["trouser"] = 0.8 },
        TrainSeconds = train,
        SampleSeconds = 30,
    };

    private static MethodSummary Find(IReadOnlyList<MethodSummary> s, string method) => s.Single(x => x.Method == method);

    [Fact]
    public void Aggregation_gives_mean_and_sample_std_over_seeds_of_final_average_and_forgetting()
    {
        var summaries = ResultsAggregation.Summarize(Example());
        Assert.Equal(["clora", "lora"], summaries.Select(s => s.Method));
        var clora = Find(summaries, "clora");
        var lora = Find(summaries, "lora");

        Assert.Equal(1e6, clora.Lambda);
        Assert.Equal([1L, 2L], clora.Seeds);
        Assert.Equal(0.75, clora.FinalAverage.Mean, 12);
        Assert.Equal(0.05 * Math.Sqrt(2), clora.FinalAverage.Std, 12);   // |0.8 − 0.7| / √2
        Assert.Equal(2, clora.FinalAverage.Count);
        Assert.Equal(0.125, clora.Forgetting.Mean, 12);
        Assert.Equal(0.025 * Math.Sqrt(2), clora.Forgetting.Std, 12);

        Assert.Equal((0.4 + 1.6 / 3) / 2, lora.FinalAverage.Mean, 12);
        Assert.Equal((1.6 / 3 - 0.4) / Math.Sqrt(2), lora.FinalAverage.Std, 12);
        Assert.Equal(0.675, lora.Forgetting.Mean, 12);
        Assert.Equal(0.15 / Math.Sqrt(2), lora.Forgetting.Std, 12);
    }

    [Fact]
    public void Aggregation_gives_mmd_base_class_and_time_summaries_and_mean_matrices()
    {
        var summaries = ResultsAggregation.Summarize(Example());
        var clora = Find(summaries, "clora");
        var lora = Find(summaries, "lora");

        // clora final MMD: seed 1 (0.3+0.1+0.1)/3, seed 2 0.1. Increase: seed 1 ((0.3−0.1) + (0.1−0.1))/2 = 0.1, seed 2 0.
        Assert.Equal((0.5 / 3 + 0.1) / 2, clora.FinalMmd.Mean, 12);
        Assert.Equal(0.05, clora.MmdIncrease.Mean, 12);
        Assert.Equal(0.1 / Math.Sqrt(2), clora.MmdIncrease.Std, 12);
        // lora increase: seed 1 ((0.9−0.1) + (0.6−0.1))/2 = 0.65, seed 2 ((0.8−0.2) + (0.5−0.1))/2 = 0.5
        Assert.Equal(0.575, lora.MmdIncrease.Mean, 12);

        // base classes: drop per run = (0.9 − after)/2
        Assert.Equal(0.85, clora.BaseAccuracyBefore!.Value.Mean, 12);
        Assert.Equal(((0.8 + 0.8) / 2 + (0.9 + 0.8) / 2) / 2, clora.BaseAccuracyAfter!.Value.Mean, 12);
        Assert.Equal(((0.9 - 0.8) / 2 + 0) / 2, clora.BaseAccuracyDrop!.Value.Mean, 12);
        Assert.Equal(((0.9 - 0.5) / 2 + (0.9 - 0.6) / 2) / 2, lora.BaseAccuracyDrop!.Value.Mean, 12);

        Assert.Equal(630, clora.TrainSeconds.Mean, 12);
        Assert.Equal(30, clora.SampleSeconds.Mean, 12);

        Assert.Equal([1, 2, 3], clora.MeanR.Select(row => row.Length));
        Assert.Equal([0.95], clora.MeanR[0], new ToleranceComparer(1e-12));
        Assert.Equal([0.85, 0.85], clora.MeanR[1], new ToleranceComparer(1e-12));
        Assert.Equal([0.8, 0.75, 0.7], clora.MeanR[2], new ToleranceComparer(1e-12));
        Assert.Equal([0.85, 0.55, 0.15], lora.MeanMmd[2], new ToleranceComparer(1e-12));
    }

    [Fact]
    public void Mmd_increase_is_the_rise_from_the_lowest_earlier_value_to_the_final_one()
    {
        double[][] m = [[0.3], [0.1, 0.2], [0.4, 0.1, 0.0]];
        // concept 0: 0.4 − min(0.3, 0.1) = 0.3; concept 1: 0.1 − 0.2 = −0.1
        Assert.Equal(0.1, ContinualMetrics.Increase(m), 12);
        Assert.Equal(0, ContinualMetrics.Increase([[0.5]]));
    }

    [Fact]
    public void A_single_seed_has_zero_std_and_is_printed_without_a_spread()
    {
        var v = MeanStd.Of([0.8125]);
        Assert.Equal(new MeanStd(0.8125, 0, 1), v);
        Assert.Equal("81.3%", ReportFormat.Percent(v));
        Assert.Equal("81.3% ± 2.5%", ReportFormat.Percent(new MeanStd(0.8125, 0.025, 3)));
    }

    [Fact]
    public void Numbers_lambdas_and_durations_are_formatted_for_reading()
    {
        Assert.Equal("0.0123", ReportFormat.Number(0.012345));
        Assert.Equal("1.23", ReportFormat.Number(1.2345));
        Assert.Equal("-0.00123", ReportFormat.Number(-0.0012345));
        Assert.Equal("0.0388 ± 0.0003", ReportFormat.Number(new MeanStd(0.03881, 0.00033, 3)));
        Assert.Equal("0.0388 ± 0.00003", ReportFormat.Number(new MeanStd(0.03881, 0.000033, 3)));
        Assert.Equal("0.0388 ± 0.0000", ReportFormat.Number(new MeanStd(0.03881, 0, 3)));
        Assert.Equal("1e+6", ReportFormat.Lambda(1e6));
        Assert.Equal("0", ReportFormat.Lambda(0));
        Assert.Equal("0.5", ReportFormat.Lambda(0.5));
        Assert.Equal("—", ReportFormat.Lambda(double.NaN));
        Assert.Equal("42 s", ReportFormat.Duration(42));
        Assert.Equal("12.5 min", ReportFormat.Duration(750));
        Assert.Equal("3.06 h", ReportFormat.Duration(11000));
    }

    [Fact]
    public void Results_round_trip_through_json_with_snake_case_keys()
    {
        var path = Path.Combine(_dir, "results.json");
        var original = Example() with { Runs = [.. Example().Runs, Run("independent", double.NaN, 1, [[1], [1, 1], [1, 1, 1]], [[0], [0, 0], [0, 0, 0]], 0.9, 1)] };
        ResultsJson.Write(path, original);
        var text = File.ReadAllText(path);
        Assert.Contains("\"concept_names\"", text);
        Assert.Contains("\"base_class_accuracy_before\"", text);
        Assert.Contains("\"train_seconds\"", text);
        Assert.Contains("\"images_per_concept\": \"50\"", text);   // dictionary keys are kept as given
        Assert.Contains("\"NaN\"", text);
        Assert.Contains("\"<v1> = pullover\"", text);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));

        var read = ResultsJson.Read(path);
        Assert.Equal(original.Title, read.Title);
        Assert.Equal(original.ConceptNames, read.ConceptNames);
        Assert.Equal(original.Config, read.Config);
        Assert.Equal(original.Runs.Count, read.Runs.Count);
        for (int k = 0; k < original.Runs.Count; k++)
        {
            var (a, b) = (original.Runs[k], read.Runs[k]);
            Assert.Equal((a.Method, a.Lambda, a.Seed, a.TrainSeconds, a.SampleSeconds), (b.Method, b.Lambda, b.Seed, b.TrainSeconds, b.SampleSeconds));
            Assert.Equal(a.R, b.R);
            Assert.Equal(a.Mmd, b.Mmd);
            Assert.Equal(a.BaseClassAccuracyBefore, b.BaseClassAccuracyBefore);
            Assert.Equal(a.BaseClassAccuracyAfter, b.BaseClassAccuracyAfter);
        }
    }

    [Fact]
    public void Reading_a_results_file_with_an_unknown_key_names_the_file()
    {
        var path = Path.Combine(_dir, "results.json");
        ResultsJson.Write(path, Example());
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"title\"", "\"titel\""));
        var e = Assert.Throws<ResultsException>(() => ResultsJson.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("titel", e.Message);
    }

    [Fact]
    public void A_run_with_a_short_matrix_row_is_rejected_naming_the_run()
    {
        var bad = Example() with { Runs = [.. Example().Runs.Take(3), Run("lora", 0, 2, [[0.8], [0.4], [0.2, 0.4, 1.0]], [[0.2], [0.4, 0.1], [0.8, 0.5, 0.2]], 0.6, 1)] };
        var e = Assert.Throws<ResultsException>(() => ResultsAggregation.Summarize(bad));
        Assert.Contains("run 'lora' seed 2", e.Message);
        Assert.Contains("'r' row 1", e.Message);
    }

    [Fact]
    public void A_run_missing_a_task_or_a_method_with_two_lambdas_is_rejected()
    {
        var shortRun = Example() with { Runs = [Run("clora", 1, 1, [[0.9], [0.8, 0.9]], [[0.1], [0.1, 0.1]], 0.8, 1)] };
        Assert.Contains("expected one per task (3)", Assert.Throws<ResultsException>(() => ResultsAggregation.Summarize(shortRun)).Message);

        var twoLambdas = Example() with { Runs = [.. Example().Runs, Run("lora", 5, 3, [[1], [1, 1], [1, 1, 1]], [[0], [0, 0], [0, 0, 0]], 0.9, 1)] };
        Assert.Contains("method 'lora'", Assert.Throws<ResultsException>(() => ResultsAggregation.Summarize(twoLambdas)).Message);

        var outOfRange = Example() with { Runs = [Run("clora", 1, 1, [[1.5], [1, 1], [1, 1, 1]], [[0], [0, 0], [0, 0, 0]], 0.9, 1)] };
        Assert.Contains("'r'[0][0] = 1.5", Assert.Throws<ResultsException>(() => ResultsAggregation.Summarize(outOfRange)).Message);
    }

    [Fact]
    public void Markdown_report_has_a_summary_row_per_method_the_mean_matrices_and_figure_links()
    {
        var path = Path.Combine(_dir, "report.md");
        MarkdownReport.Write(path, Example(), ["accuracy-clora.png", "method bars.png"]);
        var md = File.ReadAllText(path);

        Assert.StartsWith("# Test benchmark", md);
        Assert.Contains("| images_per_concept | 50 |", md);
        Assert.Contains("| task 1 | &lt;v1&gt; = pullover |", md);
        // method | λ | seeds | A | F | final MMD² | MMD² increase | final KID | KID increase | base before → after |
        // trained per task (share of UNet) | adapter per task | train time per task (630 s over 3 tasks)
        Assert.Contains($"| clora | 1e+6 | 2 | 75.0% ± 7.1% | 12.5% ± 3.5% | 0.133 ± 0.047 | 0.0500 ± 0.0707 | — | — | 85.0% → 82.5% | — | — | {ReportFormat.Duration(210)} |", md);
        Assert.Contains("| lora | 0 | 2 | 46.7% ± 9.4% | 67.5% ± 10.6% |", md);
        Assert.Contains("### clora (λ = 1e+6, 2 seeds)", md);
        Assert.Contains("| after task | &lt;v1&gt; = pullover | &lt;v2&gt; = dress | &lt;v3&gt; = sandal |", md);
        Assert.Contains("| 1 | 95.0% |  |  |", md);
        Assert.Contains("| 3 | 80.0% | 75.0% | 70.0% |", md);   // clora mean R, last row
        Assert.Contains("| 3 | 15.0% | 30.0% | 95.0% |", md);   // lora mean R, last row
        Assert.Contains("![accuracy-clora](accuracy-clora.png)", md);
        Assert.Contains("![method bars](method%20bars.png)", md);
    }

    [Fact]
    public void The_report_puts_sample_grids_first_and_compares_every_concept_with_the_classifier_ceiling()
    {
        var results = Example() with { Ceiling = new() { ["<v1> = pullover"] = 0.8, ["<v2> = dress"] = 0.9, ["<v3> = sandal"] = 1.0 } };
        var md = MarkdownReport.Render(results, ["accuracy-clora.png", "samples-seed0.png"]);
        Assert.True(md.IndexOf("samples-seed0.png") < md.IndexOf("## Results"), "the sample grid opens the report");
        Assert.True(md.IndexOf("accuracy-clora.png") > md.IndexOf("## Results"));
        // concept | ceiling | clora (diagonal → last row, mean over seeds) | lora
        Assert.Contains("| &lt;v1&gt; = pullover | 80.0% | 95.0% → 80.0% | 85.0% → 15.0% |", md);
        Assert.Contains("| mean | 90.0% |", md);
    }

    [Fact]
    public void Kid_scores_are_aggregated_like_mmd_and_must_be_given_for_every_run_of_a_method_or_none()
    {
        double[][] kid1 = [[0.1], [0.3, 0.2], [0.4, 0.2, 0.1]], kid2 = [[0.2], [0.2, 0.2], [0.2, 0.2, 0.2]];
        var runs = Example().Runs;
        var results = Example() with { Runs = [runs[0] with { Kid = kid1 }, runs[1] with { Kid = kid2 }, runs[2], runs[3]] };
        var clora = Find(ResultsAggregation.Summarize(results), "clora");
        Assert.Equal((0.7 / 3 + 0.2) / 2, clora.FinalKid!.Value.Mean, 12);
        Assert.Equal(((0.4 - 0.1 + 0.2 - 0.2) / 2 + 0) / 2, clora.KidIncrease!.Value.Mean, 12);
        Assert.Null(Find(ResultsAggregation.Summarize(results), "lora").FinalKid);
        var mixed = Example() with { Runs = [runs[0] with { Kid = kid1 }, runs[1], runs[2], runs[3]] };
        Assert.Contains("KID", Assert.Throws<ResultsException>(() => ResultsAggregation.Summarize(mixed)).Message);
    }

    [Fact]
    public void A_lambda_sweep_gets_the_forgetting_versus_accuracy_figure_with_the_reference_line()
    {
        var runs = Example().Runs;
        var sweep = Example() with
        {
            Runs = [.. runs, runs[0] with { Method = "clora-l10", Lambda = 10 }, runs[1] with { Method = "clora-l10", Lambda = 10 },
                Run("reference", double.NaN, 1, [[0.9], [0.9, 0.9], [0.9, 0.9, 0.9]], mmd: [[0.1], [0.1, 0.1], [0.1, 0.1, 0.1]], after: 0.8, train: 1) with { BaseClassAccuracyBefore = [], BaseClassAccuracyAfter = [] }],
        };
        var summaries = ResultsAggregation.Summarize(sweep);
        Assert.Equal(["lora", "clora-l10", "clora"], LambdaTradeoffFigure.Points(summaries).Select(p => p.Method)); // by λ: 0, 10, 1e6
        Assert.Equal(0.9, LambdaTradeoffFigure.ReferenceAccuracy(summaries)!.Value, 12);
        var written = BenchmarkReport.WriteAll(_dir, sweep);
        Assert.Contains(LambdaTradeoffFigure.FileName, written);
        using var image = AssertPng(Path.Combine(_dir, LambdaTradeoffFigure.FileName), 800, 600);
        Assert.True(DarkPixels(image, 0, 40) > 100, "no title text rendered");
        // Without a sweep (two methods) there is no trade-off figure.
        Assert.DoesNotContain(LambdaTradeoffFigure.FileName, BenchmarkReport.WriteAll(Path.Combine(_dir, "plain"), Example()));
    }

    [Fact]
    public void Heatmap_writes_a_png_of_the_requested_size_with_text_drawn()
    {
        var path = Path.Combine(_dir, "heat.png");
        var clora = Find(ResultsAggregation.Summarize(Example()), "clora");
        Figures.Heatmap(path, clora.MeanR, "clora accuracy", ["after task 1", "after task 2", "after task 3"],
            Example().ConceptNames, colorRange: new ScottPlot.Range(0, 1));
        using var image = AssertPng(path, 800, 600);
        // The title is drawn in the top band of an otherwise white margin: dark pixels there mean a font was found.
        Assert.True(DarkPixels(image, 0, 40) > 100, "no title text rendered; is a font available?");
    }

    [Fact]
    public void Concept_curves_and_method_bars_write_pngs_of_the_requested_size()
    {
        var summaries = ResultsAggregation.Summarize(Example());
        var curves = Path.Combine(_dir, "curves.png");
        Figures.ConceptCurves(curves, summaries.ToDictionary(s => s.Method, s => s.MeanR), Example().ConceptNames, 1000, 500);
        using (var img = AssertPng(curves, 1000, 500)) Assert.True(DarkPixels(img, 0, 500) > 1000);

        var bars = Path.Combine(_dir, "bars.png");
        Figures.MethodBars(bars, summaries);
        using (var img = AssertPng(bars, 800, 600)) Assert.True(DarkPixels(img, 0, 40) > 100);
    }

    [Fact]
    public void A_full_report_folder_links_every_figure_it_writes()
    {
        var written = BenchmarkReport.WriteAll(_dir, Example());
        Assert.Equal(["results.json", "accuracy-clora.png", "accuracy-lora.png", "concept-curves.png", "method-bars.png", "report.md"], written);
        foreach (var f in written) Assert.True(new FileInfo(Path.Combine(_dir, f)).Length > 0, f);
        var md = File.ReadAllText(Path.Combine(_dir, "report.md"));
        foreach (var png in written.Where(f => f.EndsWith(".png"))) Assert.Contains($"]({png})", md);
        using var _ = AssertPng(Path.Combine(_dir, "concept-curves.png"), 1200, 800);
    }

    [Fact]
    public void Font_choice_prefers_a_sans_family_then_a_font_file_and_fails_clearly_without_either()
    {
        Assert.Equal(new FigureFonts.Choice.Family("DejaVu Sans"),
            FigureFonts.Choose(["DejaVu Serif", "DejaVu Sans"], overrideFile: null, fileExists: _ => false));
        Assert.Equal(new FigureFonts.Choice.Family("Some Font"),
            FigureFonts.Choose(["Some Font"], overrideFile: null, fileExists: _ => false));
        Assert.Equal(new FigureFonts.Choice.File("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            FigureFonts.Choose([], overrideFile: null, fileExists: p => p.EndsWith("DejaVuSans.ttf")));
        Assert.Equal(new FigureFonts.Choice.File("/x/my.ttf"),
            FigureFonts.Choose(["DejaVu Sans"], overrideFile: "/x/my.ttf", fileExists: p => p == "/x/my.ttf"));
        Assert.Contains("CDIFF_FONT=/nope.ttf", Assert.Throws<InvalidOperationException>(
            () => FigureFonts.Choose(["DejaVu Sans"], "/nope.ttf", _ => false)).Message);
        Assert.Contains("fonts-dejavu-core", Assert.Throws<InvalidOperationException>(
            () => FigureFonts.Choose([], null, _ => false)).Message);
    }

    [Fact]
    public void Long_heatmap_column_labels_wrap_at_the_equals_sign_then_at_spaces()
    {
        Assert.Equal("<v1> = dress", Figures.WrapLabel("<v1> = dress", 12));
        Assert.Equal("<v5>\nankle boot", Figures.WrapLabel("<v5> = ankle boot", 12));
        Assert.Equal("<v5>\nankle\nboot", Figures.WrapLabel("<v5> = ankle boot", 6));
    }

    private static Image<Rgba32> AssertPng(string path, int width, int height)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 1000, $"{path}: only {bytes.Length} bytes");
        Assert.Equal(PngSignature, bytes.Take(8));
        var image = Image.Load<Rgba32>(bytes);
        Assert.Equal((width, height), (image.Width, image.Height));
        return image;
    }

    private static int DarkPixels(Image<Rgba32> image, int fromRow, int toRow)
    {
        int count = 0;
        for (int y = fromRow; y < Math.Min(toRow, image.Height); y++)
            for (int x = 0; x < image.Width; x++)
            {
                var p = image[x, y];
                if (p.A > 128 && p.R + p.G + p.B < 200) count++;
            }
        return count;
    }

    private sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double v) => 0;
    }

    [Fact]
    public void The_report_gives_each_methods_size_per_task_as_a_share_of_the_unet()
    {
        var example = Example();
        var sized = example with { Runs = [.. example.Runs.Select(r => r.Method == "clora" ? r with { TrainedValuesPerTask = 2_000, AdapterBytesPerTask = 12_345, UnetParameters = 1_000_000 } : r)] };
        var md = MarkdownReport.Render(sized, []);
        Assert.Contains("| 2,000 (0.20%) | 12.3 kB |", md);
        Assert.Contains("| lora | 0 | 2 |", md);
    }
}
