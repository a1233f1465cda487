/// <summary>
/// The samples' command line: <c>--name value</c> pairs, and bare <c>--flag</c>s for the names in <c>flags</c>.
/// Shared by the samples through a linked Compile item, so each Program.cs stays about its own job.
/// </summary>
sealed record CommandLineArgs(Dictionary<string, string?> Values)
{
    public static CommandLineArgs Parse(string[] args, params string[] flags)
    {
        var d = new Dictionary<string, string?>();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--")) throw new ArgumentException($"Expected --option [value]; got '{args[i]}'. See the sample's README for its options.");
            string key = args[i][2..];
            d[key] = flags.Contains(key) ? null : i + 1 < args.Length ? args[++i] : throw new ArgumentException($"--{key} needs a value.");
        }
        return new CommandLineArgs(d);
    }

    public bool Has(string k) => Values.ContainsKey(k);
    public string Str(string k, string dflt) => Values.GetValueOrDefault(k) ?? dflt;
    public string? StrOrNull(string k) => Values.GetValueOrDefault(k);
    public int Int(string k, int dflt) => Values.GetValueOrDefault(k) is { } v
        ? int.TryParse(v, out int r) ? r : throw new ArgumentException($"--{k} expects an integer; got '{v}'.") : dflt;
    public double Double(string k, double dflt) => Values.GetValueOrDefault(k) is { } v
        ? double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out double r) ? r : throw new ArgumentException($"--{k} expects a number; got '{v}'.") : dflt;
}
