namespace ContinualDiffusion.Schedulers;

/// The numpy 1.24 routines diffusers builds timesteps and sigmas with, reproduced in float64 so the grids match
/// element for element (np.round is round-half-to-even, np.linspace is i*step + start with the end pinned, ...).
internal static class NumpyCompat
{
    /// np.linspace(start, stop, num) (endpoint=True).
    public static double[] Linspace(double start, double stop, int num)
    {
        if (num == 1) return [start];
        double step = (stop - start) / (num - 1);
        var y = new double[num];
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        y[num - 1] = stop;
        return y;
    }

    /// np.arange(start, stop, step) for float arguments: length ceil((stop-start)/step), then numpy's fill,
    /// which derives delta from the first two elements and writes start + i*delta.
    public static double[] Arange(double start, double stop, double step)
    {
        int length = Math.Max(0, (int)Math.Ceiling((stop - start) / step));
        var y = new double[length];
        if (length == 0) return y;
        y[0] = start;
        if (length == 1) return y;
        y[1] = start + step;
        double delta = y[1] - start;
        for (int i = 2; i < length; i++) y[i] = start + i * delta;
        return y;
    }

    /// np.round (half to even).
    public static double Round(double x) => Math.Round(x, MidpointRounding.ToEven);

    /// np.interp(x, arange(len(fp)), fp) in float64 (x clamped to the ends like numpy).
    public static double Interp(double x, IReadOnlyList<float> fp)
    {
        int last = fp.Count - 1;
        if (double.IsNaN(x)) return double.NaN;
        if (x <= 0) return fp[0];
        if (x >= last) return fp[last];
        int j = (int)Math.Floor(x);
        if (x == j) return fp[j];
        // numpy: slope = (fp[j+1]-fp[j]) / (xp[j+1]-xp[j]); the xp spacing here is exactly 1.
        double slope = (double)fp[j + 1] - fp[j];
        return slope * (x - j) + fp[j];
    }
}
