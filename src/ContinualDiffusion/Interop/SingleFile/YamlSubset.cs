using System.Globalization;
using ContinualDiffusion.Configuration;

namespace ContinualDiffusion.Interop.SingleFile;

/// The subset of YAML that the original LDM configs (`v1-inference.yaml`, `v2-inference-v.yaml`, ...) are written in:
/// nested block mappings, block lists (`- 4`) and flow lists (`[ 4, 2, 1 ]`) of scalars, plain or quoted scalars,
/// `{}` and comments. Anything else (anchors, tags, multi-line strings, lists of mappings) is refused naming the line:
/// a YAML library would be a new dependency for the dozen values cdiff reads from these files.
internal sealed class YamlSubset
{
    private readonly Dictionary<string, object?> _root;

    /// The file (or a description of the text) for error messages.
    public string Source { get; }

    private YamlSubset(Dictionary<string, object?> root, string source) { _root = root; Source = source; }

    public static YamlSubset Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: config file not found");
        return Parse(File.ReadAllText(path), path);
    }

    public static YamlSubset Parse(string text, string source)
    {
        var lines = Lex(text, source);
        var parser = new Parser(lines, source);
        var root = lines.Count == 0 ? new Dictionary<string, object?>(StringComparer.Ordinal) : parser.ParseDocument();
        return new YamlSubset(root, source);
    }

    /// The node at a dotted path (`model.params.unet_config.params.num_heads`), or null when any part is absent.
    public object? Find(string path)
    {
        object? node = _root;
        foreach (var part in path.Split('.'))
        {
            if (node is not Dictionary<string, object?> map || !map.TryGetValue(part, out node)) return null;
        }
        return node;
    }

    public bool Has(string path) => Find(path) is not null;

    public string? String(string path) => Find(path) switch
    {
        null => null,
        Scalar s => s.Text,
        _ => throw Expected(path, "a single value"),
    };

    public int? Int(string path)
    {
        var s = ScalarAt(path);
        if (s is null) return null;
        return !s.Quoted && int.TryParse(s.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v)
            ? v : throw Expected(path, "an integer", s.Text);
    }

    public double? Double(string path)
    {
        var s = ScalarAt(path);
        if (s is null) return null;
        return !s.Quoted && double.TryParse(s.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? v : throw Expected(path, "a number", s.Text);
    }

    /// YAML 1.1 as PyYAML reads it: true/True/TRUE, false/False/FALSE.
    public bool? Bool(string path)
    {
        var s = ScalarAt(path);
        if (s is null) return null;
        if (!s.Quoted && s.Text is "true" or "True" or "TRUE") return true;
        if (!s.Quoted && s.Text is "false" or "False" or "FALSE") return false;
        throw Expected(path, "true or false", s.Text);
    }

    /// A list of integers; one integer is read as a one-element list (LDM allows both for `transformer_depth`).
    public int[]? Ints(string path)
    {
        var node = Find(path);
        if (node is null) return null;
        if (node is Scalar) return [Int(path)!.Value];
        if (node is not List<object?> list) throw Expected(path, "a list of integers");
        var values = new int[list.Count];
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not Scalar { Quoted: false } s || !int.TryParse(s.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out values[i]))
                throw Expected(path, "a list of integers", list[i] is Scalar e ? e.Text : "a nested value");
        }
        return values;
    }

    private Scalar? ScalarAt(string path) => Find(path) switch
    {
        null => null,
        Scalar s => s,
        _ => throw Expected(path, "a single value"),
    };

    private ConfigException Expected(string path, string what, string? got = null) =>
        new($"{Source}: key '{path}': expected {what}{(got is null ? "" : $", got '{got}'")}");

    /// A scalar as written (quotes removed). Null-like plain scalars (`~`, `null`, empty) are stored as null instead.
    internal sealed record Scalar(string Text, bool Quoted);

    private sealed record Line(int Number, int Indent, string Text);

    /// Splits the text into meaningful lines: comments and blank lines dropped, indentation measured in spaces.
    private static List<Line> Lex(string text, string source)
    {
        var lines = new List<Line>();
        var raw = text.Split('\n');
        for (int n = 0; n < raw.Length; n++)
        {
            var line = raw[n].TrimEnd('\r');
            if (n == 0 && line.StartsWith('\uFEFF')) line = line[1..];
            int indent = 0;
            while (indent < line.Length && line[indent] == ' ') indent++;
            var content = StripComment(line[indent..]).TrimEnd();
            if (content.Length == 0) continue;
            if (content[0] == '\t') throw new ConfigException($"{source}: line {n + 1}: tabs cannot indent YAML");
            if (indent == 0 && (content is "---" or "..." || content.StartsWith('%'))) continue;
            lines.Add(new Line(n + 1, indent, content));
        }
        return lines;
    }

    /// Removes a `#` comment: at the start of the content or after a space, outside quotes.
    private static string StripComment(string s)
    {
        char quote = '\0';
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (quote != '\0') { if (c == quote) quote = '\0'; continue; }
            if (c is '"' or '\'' && (i == 0 || s[i - 1] is ' ' or '[' or ',' or ':' or '-')) quote = c;
            else if (c == '#' && (i == 0 || s[i - 1] == ' ')) return s[..i];
        }
        return s;
    }

    private sealed class Parser(List<Line> lines, string source)
    {
        private int _i;

        public Dictionary<string, object?> ParseDocument()
        {
            var first = lines[0];
            if (IsListItem(first.Text)) throw Error(first, "the document must be a mapping (key: value), not a list");
            var map = ParseMap(first.Indent);
            if (_i < lines.Count) throw Error(lines[_i], "unexpected indentation");
            return map;
        }

        private object ParseBlock(int indent) =>
            IsListItem(lines[_i].Text) ? ParseList(indent) : ParseMap(indent);

        private Dictionary<string, object?> ParseMap(int indent)
        {
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (_i < lines.Count)
            {
                var line = lines[_i];
                if (line.Indent < indent) break;
                if (line.Indent > indent) throw Error(line, "unexpected indentation");
                if (IsListItem(line.Text)) throw Error(line, "a list item where a key was expected");
                var (key, rest) = SplitKey(line);
                if (map.ContainsKey(key)) throw Error(line, $"key '{key}' appears twice");
                _i++;
                if (rest.Length > 0) map[key] = ParseInline(rest, line);
                else if (_i < lines.Count && (lines[_i].Indent > indent || (lines[_i].Indent == indent && IsListItem(lines[_i].Text))))
                    map[key] = ParseBlock(lines[_i].Indent);
                else map[key] = null;
            }
            return map;
        }

        private List<object?> ParseList(int indent)
        {
            var list = new List<object?>();
            while (_i < lines.Count)
            {
                var line = lines[_i];
                if (line.Indent < indent || (line.Indent == indent && !IsListItem(line.Text))) break;
                if (line.Indent > indent) throw Error(line, "unexpected indentation");
                var item = line.Text[1..].Trim();
                _i++;
                if (item.Length == 0)
                    list.Add(_i < lines.Count && lines[_i].Indent > indent ? ParseBlock(lines[_i].Indent) : null);
                else if (KeySeparator(item) >= 0)
                    throw Error(line, "lists of mappings are not supported in an LDM config");
                else list.Add(ParseInline(item, line));
            }
            return list;
        }

        private (string Key, string Value) SplitKey(Line line)
        {
            int colon = KeySeparator(line.Text);
            if (colon <= 0) throw Error(line, "expected 'key: value'");
            var key = Unquote(line.Text[..colon].Trim(), line).Text;
            return (key, line.Text[(colon + 1)..].Trim());
        }

        private object? ParseInline(string text, Line line)
        {
            switch (text[0])
            {
                case '[':
                    if (!text.EndsWith(']')) throw Error(line, "a flow list must end on the same line with ']'");
                    var inner = text[1..^1].Trim();
                    if (inner.Length == 0) return new List<object?>();
                    if (inner.IndexOfAny(['[', '{']) >= 0) throw Error(line, "nested flow collections are not supported");
                    var parts = inner.Split(',').Select(p => p.Trim()).ToList();
                    if (parts[^1].Length == 0) parts.RemoveAt(parts.Count - 1); // a trailing comma
                    return parts.Select(p => p.Length == 0 ? throw Error(line, "empty list entry") : (object?)ScalarOrNull(p, line)).ToList();
                case '{':
                    if (text.Replace(" ", "") == "{}") return new Dictionary<string, object?>(StringComparer.Ordinal);
                    throw Error(line, "flow mappings ({...}) are not supported");
                case '&' or '*' or '!' or '|' or '>':
                    throw Error(line, $"'{text[0]}' (anchors, aliases, tags, block strings) is not supported in an LDM config");
                default:
                    return ScalarOrNull(text, line);
            }
        }

        private Scalar? ScalarOrNull(string text, Line line)
        {
            var s = Unquote(text, line);
            return !s.Quoted && s.Text is "~" or "null" or "Null" or "NULL" ? null : s;
        }

        private Scalar Unquote(string text, Line line)
        {
            if (text.Length > 0 && text[0] is '"' or '\'')
            {
                if (text.Length < 2 || text[^1] != text[0]) throw Error(line, $"unterminated quoted value {text}");
                return new Scalar(text[1..^1], Quoted: true);
            }
            return new Scalar(text, Quoted: false);
        }

        private ConfigException Error(Line line, string what) => new($"{source}: line {line.Number}: {what}");
    }

    private static bool IsListItem(string text) => text == "-" || text.StartsWith("- ", StringComparison.Ordinal);

    /// Index of the `:` that ends a mapping key (followed by a space or the end of the line, outside quotes), or -1.
    private static int KeySeparator(string text)
    {
        char quote = '\0';
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quote != '\0') { if (c == quote) quote = '\0'; continue; }
            if (i == 0 && c is '"' or '\'') quote = c;
            else if (c == ':' && (i + 1 == text.Length || text[i + 1] == ' ')) return i;
            else if (c is '[' or '{' && i == 0) return -1;
        }
        return -1;
    }
}
