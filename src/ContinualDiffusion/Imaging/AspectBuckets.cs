namespace ContinualDiffusion.Imaging;

/// Aspect-ratio buckets (kohya-ss sd-scripts' `--enable_bucket`, OneTrainer's aspect-ratio bucketing): instead of
/// centre-cropping every image to a square, each image is cropped to the bucket whose width:height is nearest its own
/// and resized to that bucket's size, so a portrait keeps its head and feet. Every bucket has at most the square's
/// area (resolution²), sides that are multiples of `step` between `MinSide` and `MaxSide`; a batch holds images of one
/// bucket only (TaskTrainer; drawn with replacement, as every batch is, so a bucket of one image makes a batch of
/// copies). The sizes are kohya's `make_bucket_resolutions` (library/model_util.py) with min and max side half and
/// twice the resolution (kohya's defaults at 512; kohya keeps 256 and 1024 at any resolution unless told), the choice
/// of bucket its `BucketManager.select_bucket` (the smallest |aspect error|, the first such in width-then-height order).
public sealed class AspectBuckets
{
    public IReadOnlyList<(int Width, int Height)> Sizes { get; }
    public int Resolution { get; }
    public int Step { get; }
    /// kohya's `min_bucket_reso` and `max_bucket_reso`, here half and twice the resolution (kohya's fixed defaults,
    /// 256 and 1024, are those at 512), rounded down to the step as its `adjust_min_max_bucket_reso_by_steps` does.
    public int MinSide => MinSideOf(Resolution, Step);
    public int MaxSide => MaxSideOf(Resolution, Step);

    public static int MinSideOf(int resolution, int step) => Math.Max(step, resolution / 2 / step * step);
    public static int MaxSideOf(int resolution, int step) => (int)Math.Min(int.MaxValue, 2L * resolution / step * step);

    public AspectBuckets(int resolution, int step)
    {
        if (step < 8 || step % 8 != 0) throw new ArgumentOutOfRangeException(nameof(step), step, "a multiple of 8");
        if (resolution < step || resolution % step != 0) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, $"a multiple of the step ({step})");
        Resolution = resolution;
        Step = step;
        long area = (long)resolution * resolution;
        var sizes = new HashSet<(int, int)>();
        int square = (int)(Math.Sqrt(area) / step) * step;
        sizes.Add((square, square));
        for (int width = MinSide; width <= MaxSide; width += step)
        {
            int height = (int)Math.Min(MaxSide, area / width / step * step);
            if (height < MinSide) continue;
            sizes.Add((width, height));
            sizes.Add((height, width));
        }
        Sizes = [.. sizes.OrderBy(s => s.Item1).ThenBy(s => s.Item2)];
    }

    /// The bucket an image of this size goes to.
    public (int Width, int Height) For(int width, int height)
    {
        double aspect = (double)width / height;
        int best = 0;
        double bestError = double.PositiveInfinity;
        for (int i = 0; i < Sizes.Count; i++)
        {
            double error = Math.Abs((double)Sizes[i].Width / Sizes[i].Height - aspect);
            if (error < bestError) (best, bestError) = (i, error);
        }
        return Sizes[best];
    }
}
