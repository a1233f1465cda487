using System.Diagnostics;
using System.Text;

namespace MLNet.ConvNet.Distributed.Tests;

/// <summary>Starts the worker (tests/Distributed.Worker) alone or under <c>mpirun.mpich -n N</c>, always within a time limit.</summary>
public static class Mpi
{
    /// <summary>MPICH's launcher, or null when it is not installed (.ci/run installs Debian's mpich).</summary>
    public static string? Launcher { get; } = new[] { "/usr/bin/mpirun.mpich", "/usr/local/bin/mpirun.mpich" }.FirstOrDefault(File.Exists);

    /// <summary>Why the MPI tests skip here, or null when they run.</summary>
    public static string? SkipReason => Launcher is null ? "mpirun.mpich is not installed (apt-get install mpich libmpich-dev; .ci/run does it)" : null;

    /// <summary>The worker's dll, built beside this test project by its project reference.</summary>
    public static string Worker
    {
        get
        {
            string configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name; // bin/<Configuration>/net10.0/
            string root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));
            string path = Path.Combine(root, "Distributed.Worker", "bin", configuration, "net10.0", "MLNet.ConvNet.Distributed.Worker.dll");
            if (!File.Exists(path)) throw new FileNotFoundException($"The MPI test worker is not built at '{path}'.");
            return path;
        }
    }

    /// <summary>
    /// The worker run by <paramref name="ranks"/> processes (0: alone, no launcher) with <paramref name="arguments"/>
    /// and, when given, these <paramref name="environment"/> variables set.
    /// </summary>
    public static Result Run(int ranks, string arguments, TimeSpan limit, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo
        {
            FileName = ranks == 0 ? "dotnet" : Launcher!,
            Arguments = (ranks == 0 ? "" : $"-n {ranks} dotnet ") + $"\"{Worker}\" {arguments}",
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var v in new[] { "PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE" }) start.Environment.Remove(v);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        var output = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        bool exited = process.WaitForExit(limit);
        if (!exited) process.Kill(entireProcessTree: true); // mpirun and every rank under it
        process.WaitForExit();
        lock (output) return new Result(exited ? process.ExitCode : null, clock.Elapsed, output.ToString());
    }

    /// <summary>A finished run: the exit code (null when it had to be killed at the limit), its time and what it printed.</summary>
    public sealed record Result(int? ExitCode, TimeSpan Elapsed, string Output)
    {
        public override string ToString() => $"exit code {ExitCode?.ToString() ?? "none (killed at the time limit)"} after {Elapsed.TotalSeconds:F1} s:\n{Output}";
    }

    /// <summary>The float32 values the worker's rank 0 wrote with --out.</summary>
    public static float[] ReadWeights(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    public static string TempDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"convnet-mpi-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
