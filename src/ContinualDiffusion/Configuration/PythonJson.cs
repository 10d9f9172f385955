using System.Text;

namespace ContinualDiffusion.Configuration;

/// Python's json module writes non-finite floats as bare NaN / Infinity / -Infinity (diffusers'
/// DPMSolverMultistepScheduler config carries "lambda_min_clipped": -Infinity). System.Text.Json accepts them only
/// as quoted strings (JsonNumberHandling.AllowNamedFloatingPointLiterals), so quote them outside strings and comments.
public static class PythonJson
{
    private static readonly string[] NonFiniteTokens = ["-Infinity", "Infinity", "NaN"];

    public static string QuoteNonFiniteNumbers(string json)
    {
        var sb = new StringBuilder(json.Length + 16);
        int i = 0;
        while (i < json.Length)
        {
            char c = json[i];
            if (c == '"') { i = CopyString(json, i, sb); continue; }
            if (c == '/' && i + 1 < json.Length && (json[i + 1] == '/' || json[i + 1] == '*')) { i = CopyComment(json, i, sb); continue; }
            var token = NonFiniteTokens.FirstOrDefault(t => string.CompareOrdinal(json, i, t, 0, t.Length) == 0);
            if (token is not null)
            {
                sb.Append('"').Append(token).Append('"');
                i += token.Length;
                continue;
            }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }

    /// Copies a string literal starting at the opening quote; returns the index after the closing quote.
    private static int CopyString(string json, int start, StringBuilder sb)
    {
        sb.Append('"');
        int i = start + 1;
        while (i < json.Length)
        {
            char c = json[i++];
            sb.Append(c);
            if (c == '\\' && i < json.Length) sb.Append(json[i++]);
            else if (c == '"') break;
        }
        return i;
    }

    /// Copies a // or /* */ comment verbatim (JsonConfig allows comments), so quotes inside it do not confuse us.
    private static int CopyComment(string json, int start, StringBuilder sb)
    {
        bool line = json[start + 1] == '/';
        int end = line ? json.IndexOf('\n', start) : json.IndexOf("*/", start + 2, StringComparison.Ordinal);
        end = end < 0 ? json.Length : (line ? end : end + 2);
        sb.Append(json, start, end - start);
        return end;
    }
}
