using System.Globalization;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// What a layer is, without its weights: a kind name ("Conv") and its hyper-parameters as ordered key/value strings
/// ("out_channels" = "6", "kernel" = "5"). <see cref="Layer.Spec"/> writes it, <see cref="Layer.FromSpec"/> makes a new
/// unbuilt layer from it, and checkpoints store one per layer so a network can be rebuilt without the code that made it.
/// </summary>
/// <remarks>
/// Values are written with the invariant culture (floats in their shortest round-trip form), so a spec reads back to
/// exactly the same hyper-parameters on any machine. A <see cref="PerAxis"/> is written as "2" or "[1, 2]".
/// </remarks>
public sealed class LayerSpec
{
    private readonly KeyValuePair<string, string>[] _values;

    /// <summary>A spec of kind <paramref name="kind"/> with <paramref name="values"/> (keys must be distinct).</summary>
    public LayerSpec(string kind, IEnumerable<KeyValuePair<string, string>> values)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        ArgumentNullException.ThrowIfNull(values);
        Kind = kind;
        _values = values.ToArray();
        var dup = _values.GroupBy(v => v.Key).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"LayerSpec '{kind}': the key '{dup.Key}' appears twice.", nameof(values));
    }

    /// <summary>A spec from (key, value) pairs; values are ints, floats, bools, enums, strings or <see cref="PerAxis"/>.</summary>
    public static LayerSpec Of(string kind, params (string Key, object Value)[] values) =>
        new(kind, values.Select(v => KeyValuePair.Create(v.Key, FormatValue(kind, v.Key, v.Value))));

    /// <summary>The layer kind: the name it is registered under (<see cref="Layer.Register"/>).</summary>
    public string Kind { get; }

    /// <summary>The hyper-parameters in the order the layer wrote them.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Values => _values;

    /// <summary>The value of <paramref name="key"/>; throws <see cref="InvalidDataException"/> naming the kind and key when it is missing.</summary>
    public string Get(string key)
    {
        foreach (var (k, v) in _values) if (k == key) return v;
        throw new InvalidDataException($"LayerSpec '{Kind}' has no value '{key}' (it has: {string.Join(", ", _values.Select(v => v.Key))}).");
    }

    public int GetInt(string key) => Parse(key, s => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));
    public float GetFloat(string key) => Parse(key, s => float.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture));
    public bool GetBool(string key) => Parse(key, bool.Parse);
    public T GetEnum<T>(string key) where T : struct, Enum => Parse(key, s => Enum.Parse<T>(s));

    /// <summary>A <see cref="PerAxis"/> written as "2", "[1, 2]" or "default" (not given).</summary>
    public PerAxis GetPerAxis(string key) => Parse(key, s =>
    {
        if (s == "default") return default;
        var parts = s.Trim('[', ']').Split(',');
        var values = parts.Select(p => int.Parse(p.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture)).ToArray();
        return values.Length == 1 && !s.StartsWith('[') ? new PerAxis(values[0]) : new PerAxis(values);
    });

    /// <summary>"Conv(out_channels=6, kernel=5, ...)".</summary>
    public override string ToString() => $"{Kind}({string.Join(", ", _values.Select(v => $"{v.Key}={v.Value}"))})";

    private T Parse<T>(string key, Func<string, T> parse)
    {
        string s = Get(key);
        try { return parse(s); }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            throw new InvalidDataException($"LayerSpec '{Kind}': value '{key}' = \"{s}\" is not a valid {typeof(T).Name}.", e);
        }
    }

    private static string FormatValue(string kind, string key, object value) => value switch
    {
        int i => i.ToString(CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        Enum e => e.ToString(),
        string s => s,
        // PerAxis.ToString writes "2", "[1, 2]" or "default", which GetPerAxis reads back.
        PerAxis p => p.ToString(),
        _ => throw new ArgumentException($"LayerSpec '{kind}': value '{key}' of type {value?.GetType().Name ?? "null"} cannot be written; use an int, float, bool, enum, string or PerAxis."),
    };
}
