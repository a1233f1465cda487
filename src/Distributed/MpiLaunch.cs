namespace MLNet.ConvNet.Distributed;

/// <summary>Which MPI launcher, if any, started this process (from the environment variables the launchers set).</summary>
public enum MpiLauncher
{
    /// <summary>No MPI launcher: a plain process.</summary>
    None,
    /// <summary>MPICH's mpiexec/mpirun (hydra), or another PMI launcher (MS-MPI, Intel MPI, Slurm with PMI): PMI_RANK and PMI_SIZE.</summary>
    Pmi,
    /// <summary>Open MPI's mpirun: OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE. Not supported (see <see cref="MpiLaunch.Detect()"/>).</summary>
    OpenMpi,
}

/// <summary>How this process was launched: the launcher, this process's rank and the number of processes.</summary>
/// <param name="Launcher">The launcher the environment names.</param>
/// <param name="Rank">This process's rank (0 without a launcher).</param>
/// <param name="Size">The number of processes (1 without a launcher).</param>
public sealed record MpiLaunch(MpiLauncher Launcher, int Rank, int Size)
{
    /// <summary>True for rank 0, the process that writes files and logs (also true without a launcher).</summary>
    public bool IsRankZero => Rank == 0;

    /// <summary>
    /// Reads the launcher's environment variables, without starting MPI: PMI_RANK/PMI_SIZE (MPICH's mpirun, MS-MPI) or
    /// OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE (Open MPI). A program can call it before training to know whether it is
    /// rank 0 (the one that should save the model).
    /// </summary>
    public static MpiLaunch Detect() => Detect(Environment.GetEnvironmentVariable);

    /// <summary><see cref="Detect()"/> over the given variables (for tests).</summary>
    public static MpiLaunch Detect(Func<string, string?> variable)
    {
        ArgumentNullException.ThrowIfNull(variable);
        if (Read(variable, "PMI_RANK", "PMI_SIZE") is { } pmi) return new MpiLaunch(MpiLauncher.Pmi, pmi.Rank, pmi.Size);
        if (Read(variable, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE") is { } ompi) return new MpiLaunch(MpiLauncher.OpenMpi, ompi.Rank, ompi.Size);
        return new MpiLaunch(MpiLauncher.None, 0, 1);
    }

    private static (int Rank, int Size)? Read(Func<string, string?> variable, string rankName, string sizeName)
    {
        string? rank = variable(rankName), size = variable(sizeName);
        if (rank is null && size is null) return null;
        if (!int.TryParse(rank, out int r) || !int.TryParse(size, out int s) || s < 1 || r < 0 || r >= s)
            throw new InvalidOperationException($"The MPI launcher's environment is inconsistent: {rankName} = '{rank}', {sizeName} = '{size}'.");
        return (r, s);
    }
}
