using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace MLNet.ConvNet.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> over MPI's COMM_WORLD, through MPI.NET's bindings to MPI_Bcast, MPI_Allreduce (in place,
/// MPI_SUM) and MPI_Abort. One per process (<see cref="World"/>): MPI starts once, on first use, and is finalised when
/// the process exits.
/// </summary>
/// <remarks>
/// A rank that dies must not leave the others waiting: an exception nobody catches on any thread calls MPI_Abort (which
/// ends every rank), so does a process exit with a non-zero code, the trainer calls <see cref="Abort"/> when Fit fails on
/// one rank, and MPICH's mpirun ends the job when a process is killed. Not detected: a rank that hangs, or that exits
/// with code 0 in the middle of training (MPI_Finalize then waits for the others, which wait for it). It also counts the time spent in allreduce (<see cref="AllreduceSeconds"/>), which includes
/// waiting for the slowest rank.
/// </remarks>
public sealed class MpiCommunicator : ICommunicator
{
    private static readonly Lock Gate = new();
    private static MpiCommunicator? _world;
    private readonly MPI.Environment _environment;
    private bool _finalized;

    private MpiCommunicator(string library)
    {
        string[] args = [];
        _environment = new MPI.Environment(ref args, MPI.Threading.Serialized);
        Rank = MPI.Communicator.world.Rank;
        Size = MPI.Communicator.world.Size;
        Name = $"MPI ({library})";
        AppDomain.CurrentDomain.UnhandledException += (_, e) => Abort($"MLNet.ConvNet: unhandled exception on rank {Rank} of {Size}; ending the MPI job. {e.ExceptionObject}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            // MPI_Finalize waits for every rank; a rank leaving with an error code would leave the others waiting for it.
            if (Environment.ExitCode != 0) Abort($"MLNet.ConvNet: rank {Rank} of {Size} is exiting with code {Environment.ExitCode}; ending the MPI job.", Environment.ExitCode);
            Finish();
        };
    }

    /// <summary>
    /// This process's communicator over every rank of the job, starting MPI on first use. Throws
    /// <see cref="DllNotFoundException"/> naming the libraries it tried when no MPI library loads, and
    /// <see cref="NotSupportedException"/> when Open MPI launched the process.
    /// </summary>
    public static MpiCommunicator World
    {
        get
        {
            lock (Gate)
            {
                if (_world is not null) return _world;
                if (MpiLaunch.Detect().Launcher == MpiLauncher.OpenMpi)
                    throw new NotSupportedException("This process was started by Open MPI's mpirun (OMPI_COMM_WORLD_* variables), which MLNet.ConvNet " +
                        "cannot use: MPI.NET follows MPICH's ABI. Install MPICH (Debian: apt-get install mpich libmpich-dev) and start with mpirun.mpich.");
                return _world = new MpiCommunicator(MpiLibrary.Resolve());
            }
        }
    }

    /// <inheritdoc/>
    public int Rank { get; }
    /// <inheritdoc/>
    public int Size { get; }
    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>Allreduce calls so far.</summary>
    public long AllreduceCalls { get; private set; }
    /// <summary>Bytes summed by those calls (per rank).</summary>
    public long AllreduceBytes { get; private set; }
    /// <summary>Seconds spent in those calls, including waiting for the other ranks to arrive.</summary>
    public double AllreduceSeconds { get; private set; }

    /// <inheritdoc/>
    public unsafe void Broadcast(Span<float> data, int root = 0)
    {
        fixed (float* p = data) Check(MPI.Unsafe.MPI_Bcast((IntPtr)p, data.Length, MPI.Unsafe.MPI_FLOAT, root, MPI.Unsafe.MPI_COMM_WORLD), "MPI_Bcast");
    }

    /// <inheritdoc/>
    public unsafe void Broadcast(Span<double> data, int root = 0)
    {
        fixed (double* p = data) Check(MPI.Unsafe.MPI_Bcast((IntPtr)p, data.Length, MPI.Unsafe.MPI_DOUBLE, root, MPI.Unsafe.MPI_COMM_WORLD), "MPI_Bcast");
    }

    /// <inheritdoc/>
    public unsafe void AllreduceSum(Span<float> data)
    {
        fixed (float* p = data) Allreduce((IntPtr)p, data.Length, MPI.Unsafe.MPI_FLOAT, sizeof(float));
    }

    /// <inheritdoc/>
    public unsafe void AllreduceSum(Span<double> data)
    {
        fixed (double* p = data) Allreduce((IntPtr)p, data.Length, MPI.Unsafe.MPI_DOUBLE, sizeof(double));
    }

    private void Allreduce(IntPtr data, int count, int type, int size)
    {
        long start = Stopwatch.GetTimestamp();
        // MPI_IN_PLACE is (void*)-1 in MPICH's and MS-MPI's ABI: the result replaces the input.
        Check(MPI.Unsafe.MPI_Allreduce(new IntPtr(-1), data, count, type, MPI.Unsafe.MPI_SUM, MPI.Unsafe.MPI_COMM_WORLD), "MPI_Allreduce");
        AllreduceSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
        AllreduceCalls++;
        AllreduceBytes += (long)count * size;
    }

    /// <inheritdoc/>
    [DoesNotReturn]
    public void Abort(string message, int exitCode = 1)
    {
        Console.Out.Flush();
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        MPI.Unsafe.MPI_Abort(MPI.Unsafe.MPI_COMM_WORLD, exitCode == 0 ? 1 : exitCode);
        Environment.Exit(exitCode == 0 ? 1 : exitCode); // MPI_Abort does not return; in case it does
        throw new UnreachableException();
    }

    private void Finish()
    {
        lock (Gate)
        {
            if (_finalized) return;
            _finalized = true;
            _environment.Dispose(); // MPI_Finalize
        }
    }

    private void Check(int code, string call)
    {
        if (code != 0) throw new InvalidOperationException($"{call} failed on rank {Rank} of {Size} with MPI error code {code}.");
    }
}

/// <summary>Points MPI.NET (built against MS-MPI's msmpi.dll) at the MPI library of this machine.</summary>
internal static class MpiLibrary
{
    /// <summary>The environment variable that names the MPI library to load (a file name or path), before the defaults.</summary>
    public const string Variable = "MLNET_CONVNET_MPI_LIBRARY";

    private static string? _loaded;

    /// <summary>
    /// Installs the import resolver once and loads the library: the one <see cref="Variable"/> names, else MPICH's
    /// libmpich.so.12 (Linux), libmpich.12.dylib (macOS) or msmpi.dll (Windows). MS-MPI follows MPICH's ABI (integer
    /// handles, the same constants), which is why MPICH can stand in for it; Open MPI's ABI differs and cannot.
    /// </summary>
    public static string Resolve()
    {
        if (_loaded is not null) return _loaded;
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } given) candidates.Add(given);
        candidates.Add(OperatingSystem.IsWindows() ? "msmpi.dll" : OperatingSystem.IsMacOS() ? "libmpich.12.dylib" : "libmpich.so.12");
        IntPtr handle = IntPtr.Zero;
        foreach (var name in candidates)
            if (NativeLibrary.TryLoad(name, out handle)) { _loaded = name; break; }
        if (_loaded is null)
            throw new DllNotFoundException($"No MPI library could be loaded; tried {string.Join(", ", candidates.Select(c => $"'{c}'"))}. " +
                $"Install MPICH (Debian: apt-get install mpich libmpich-dev), or set {Variable} to an MPI library with MPICH's ABI.");
        var library = handle;
        NativeLibrary.SetDllImportResolver(typeof(MPI.Environment).Assembly, (name, _, _) => name.Contains("msmpi", StringComparison.OrdinalIgnoreCase) ? library : IntPtr.Zero);
        return _loaded;
    }
}
