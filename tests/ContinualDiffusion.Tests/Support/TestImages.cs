using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace ContinualDiffusion.Tests.Support;

/// Small generated concept images (solid colour with a lighter square) written as real image files.
public static class TestImages
{
    public static string WriteFolder(string dir, int count, Rgb24 colour, int size = 40)
    {
        Directory.CreateDirectory(dir);
        for (int i = 0; i < count; i++)
        {
            using var img = new Image<Rgb24>(size, size + 8, colour);
            for (int y = 4 + i; y < 20 + i; y++)
                for (int x = 8; x < 24; x++)
                    img[x, y] = new Rgb24((byte)Math.Min(255, colour.R + 80), (byte)Math.Min(255, colour.G + 80), (byte)Math.Min(255, colour.B + 80));
            img.SaveAsPng(Path.Combine(dir, $"img{i}.png"));
        }
        return dir;
    }
}
