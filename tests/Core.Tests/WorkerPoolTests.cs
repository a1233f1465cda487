using System.Diagnostics;
using MLNet.ConvNet.Backends.Cpu;
using Xunit;

namespace MLNet.ConvNet.Tests;

/// <summary>
/// CpuBackend.For and its WorkerPool: every index runs once, on at most MaxThreads threads; exceptions from any
/// thread reach the caller unwrapped and leave the pool working; concurrent and nested callers are correct.
/// In the non-parallel collection: the pools are shared per thread count, and a pool busy with another test's
/// loop would run these loops serially, which the rendezvous tests must not see.
/// </summary>
[Collection(nameof(NotInParallel))]
public class WorkerPoolTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>Counts the runs of each index and notes the thread that ran it.</summary>
    private readonly struct Recorder(int[] hits, int[] threads) : IParallelBody
    {
        public void Run(int i)
        {
            Interlocked.Increment(ref hits[i]);
            threads[i] = Environment.CurrentManagedThreadId;
        }
    }

    /// <summary>
    /// Each index waits until all <paramref name="parties"/> indices have started, so with count = parties every
    /// thread of the loop holds one index at the same time: the loop can finish only if MaxThreads threads take part.
    /// Then throws where <paramref name="throwOn"/> says (on the caller's thread, on the others, or nowhere).
    /// </summary>
    public enum Thrower { Nobody, Caller, Workers }

    private readonly struct Rendezvous(int[] arrived, int parties, int callerThread, Thrower throwOn) : IParallelBody
    {
        public void Run(int i)
        {
            Interlocked.Increment(ref arrived[0]);
            var clock = Stopwatch.StartNew();
            while (Volatile.Read(ref arrived[0]) < parties)
            {
                if (clock.Elapsed > Patience) throw new TimeoutException($"index {i}: only {arrived[0]} of {parties} threads arrived");
                Thread.Yield();
            }
            bool onCaller = Environment.CurrentManagedThreadId == callerThread;
            if ((throwOn == Thrower.Caller && onCaller) || (throwOn == Thrower.Workers && !onCaller))
                throw new InvalidOperationException($"index {i} failed on purpose");
        }
    }

    private static void RunRendezvous(CpuBackend backend, Thrower throwOn) =>
        backend.For(backend.MaxThreads, new Rendezvous(new int[1], backend.MaxThreads, Environment.CurrentManagedThreadId, throwOn));

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 0)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 3)]
    [InlineData(3, 1000)]
    [InlineData(4, 10_000)]
    public void EveryIndexRunsOnceOnAtMostMaxThreads(int maxThreads, int count)
    {
        var backend = new CpuBackend(maxThreads);
        var (hits, threads) = (new int[count], new int[count]);
        backend.For(count, new Recorder(hits, threads));
        Assert.All(hits, h => Assert.Equal(1, h));
        Assert.InRange(threads.Distinct().Count(), count == 0 ? 0 : 1, maxThreads);
        // One index never leaves the calling thread.
        if (count == 1) Assert.Equal(Environment.CurrentManagedThreadId, threads[0]);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void AllThreadsTakePart(int maxThreads) => RunRendezvous(new CpuBackend(maxThreads), Thrower.Nobody);

    [Theory]
    [InlineData(2, Thrower.Workers)]
    [InlineData(2, Thrower.Caller)]
    [InlineData(3, Thrower.Workers)]
    public void ExceptionsReachTheCallerUnwrappedAndThePoolStillWorks(int maxThreads, Thrower thrower)
    {
        var backend = new CpuBackend(maxThreads);
        for (int round = 0; round < 3; round++)
        {
            var e = Assert.Throws<InvalidOperationException>(() => RunRendezvous(backend, thrower));
            Assert.Contains("failed on purpose", e.Message);
            // Every worker is back: a loop that needs all of them completes.
            RunRendezvous(backend, Thrower.Nobody);
        }
    }

    [Fact]
    public void ExceptionStopsTheHandOutOfIndices()
    {
        var backend = new CpuBackend(2);
        var hits = new int[100_000];
        Assert.Throws<ArithmeticException>(() => backend.For(hits.Length, new ThrowAt(hits, 10)));
        // The threads stop taking indices soon after the throw: far from all of them ran.
        Assert.True(hits.Sum() < hits.Length / 2, $"{hits.Sum()} of {hits.Length} indices ran after the exception");
    }

    private readonly struct ThrowAt(int[] hits, int at) : IParallelBody
    {
        public void Run(int i)
        {
            if (i == at) throw new ArithmeticException("stop");
            hits[i]++;
        }
    }

    [Fact]
    public void ConcurrentCallersGetCorrectResults()
    {
        // Two threads share one backend (so one pool): whichever finds it busy runs its loop serially.
        var backend = new CpuBackend(2);
        const int Loops = 300, Count = 64;
        string? failure = null;
        using var start = new Barrier(2);
        void Caller()
        {
            start.SignalAndWait();
            for (int loop = 0; loop < Loops && failure is null; loop++)
            {
                var (hits, threads) = (new int[Count], new int[Count]);
                backend.For(Count, new Recorder(hits, threads));
                if (hits.Any(h => h != 1)) failure = $"loop {loop}: an index ran {hits.First(h => h != 1)} times";
                else if (threads.Distinct().Count() > 2) failure = $"loop {loop}: {threads.Distinct().Count()} threads";
            }
        }
        var callers = new[] { new Thread(Caller), new Thread(Caller) };
        foreach (var t in callers) t.Start();
        foreach (var t in callers) Assert.True(t.Join(Patience), "a caller hung");
        Assert.Null(failure);
    }

    private readonly struct Outer(CpuBackend backend, int[] hits, int inner) : IParallelBody
    {
        public void Run(int i) => backend.For(inner, new Inner(hits, i * inner));
    }

    private readonly struct Inner(int[] hits, int offset) : IParallelBody
    {
        public void Run(int j) => Interlocked.Increment(ref hits[offset + j]);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void NestedLoopsRunEveryIndexOnce(int maxThreads)
    {
        var backend = new CpuBackend(maxThreads);
        const int OuterCount = 7, InnerCount = 500;
        var hits = new int[OuterCount * InnerCount];
        var caller = new Thread(() => backend.For(OuterCount, new Outer(backend, hits, InnerCount)));
        caller.Start();
        Assert.True(caller.Join(Patience), "the nested loop hung");
        Assert.All(hits, h => Assert.Equal(1, h));
    }
}
