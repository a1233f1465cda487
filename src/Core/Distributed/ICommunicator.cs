using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace MLNet.ConvNet.Distributed;

/// <summary>
/// The few collective operations data-parallel training needs, between the <see cref="Size"/> processes ("ranks") of
/// one job. The engine trains through this interface only; src/Distributed implements it over MPI (MPI.NET and MPICH),
/// <see cref="SingleProcessCommunicator"/> is the one-process case, and another transport (NCCL for GPUs) would be one
/// more implementation.
/// </summary>
/// <remarks>
/// Every method except <see cref="Abort"/> is collective: each rank must call the same methods in the same order with
/// buffers of the same length, or the job hangs or fails. The trainer guarantees this by making every decision that
/// changes the sequence of calls (stopping, the number of steps) from values that are the same on every rank.
/// </remarks>
public interface ICommunicator
{
    /// <summary>This process's number, 0 to <see cref="Size"/> - 1. Rank 0 writes checkpoints and logs.</summary>
    int Rank { get; }

    /// <summary>The number of processes in the job.</summary>
    int Size { get; }

    /// <summary>A short description for logs, e.g. "MPI (libmpich.so.12)".</summary>
    string Name { get; }

    /// <summary>Replaces <paramref name="data"/> on every rank with <paramref name="root"/>'s values.</summary>
    void Broadcast(Span<float> data, int root = 0);

    /// <summary>Replaces <paramref name="data"/> on every rank with <paramref name="root"/>'s values.</summary>
    void Broadcast(Span<double> data, int root = 0);

    /// <summary>Replaces <paramref name="data"/> on every rank with the element-wise sum over all ranks.</summary>
    void AllreduceSum(Span<float> data);

    /// <summary>Replaces <paramref name="data"/> on every rank with the element-wise sum over all ranks.</summary>
    void AllreduceSum(Span<double> data);

    /// <summary>
    /// Ends the whole job now, every rank, with a non-zero exit code, after writing <paramref name="message"/> to
    /// standard error. Not collective: one failing rank calls it so that the others do not wait for it forever.
    /// </summary>
    [DoesNotReturn]
    void Abort(string message, int exitCode = 1);
}

/// <summary>The job of one process: rank 0 of 1; the collectives leave the data as it is.</summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    /// <summary>The shared instance.</summary>
    public static SingleProcessCommunicator Instance { get; } = new();

    /// <summary>0.</summary>
    public int Rank => 0;
    /// <summary>1.</summary>
    public int Size => 1;
    /// <summary>"single process".</summary>
    public string Name => "single process";

    /// <summary>Nothing to do: the only rank is the root.</summary>
    public void Broadcast(Span<float> data, int root = 0) => CheckRoot(root);
    /// <summary>Nothing to do: the only rank is the root.</summary>
    public void Broadcast(Span<double> data, int root = 0) => CheckRoot(root);
    /// <summary>Nothing to do: the sum over one rank is its own values.</summary>
    public void AllreduceSum(Span<float> data) { }
    /// <summary>Nothing to do: the sum over one rank is its own values.</summary>
    public void AllreduceSum(Span<double> data) { }

    /// <summary>Writes <paramref name="message"/> to standard error and exits the process with <paramref name="exitCode"/>.</summary>
    [DoesNotReturn]
    public void Abort(string message, int exitCode = 1)
    {
        Console.Error.WriteLine(message);
        Environment.Exit(exitCode == 0 ? 1 : exitCode);
        throw new UnreachableException();
    }

    private static void CheckRoot(int root)
    {
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "A single-process job has only rank 0.");
    }
}
