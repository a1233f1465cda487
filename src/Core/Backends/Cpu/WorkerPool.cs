using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace MLNet.ConvNet.Backends.Cpu;

/// <summary>
/// The body of a parallel loop: <c>Run(i)</c> is called once for each index, in any order, on any thread.
/// </summary>
/// <remarks>
/// Implemented by small <c>readonly struct</c>s whose fields are the kernel's arguments (what a lambda would
/// capture), so starting a loop allocates nothing. Run must not write the struct's own fields.
/// </remarks>
internal interface IParallelBody
{
    void Run(int index);
}

/// <summary>
/// A fork-join pool for <see cref="CpuBackend.For{TBody}"/>: <c>threads - 1</c> background workers that, together
/// with the calling thread, run the indices of one parallel loop at a time. One pool per thread count, shared by
/// every backend with that <see cref="CpuBackend.MaxThreads"/>.
/// </summary>
/// <remarks>
/// How a loop runs without allocating:
/// <list type="bullet">
/// <item>The body struct lives in the caller's stack frame. The caller publishes its address and a function
/// pointer to <see cref="Drain{TBody}"/>, which turns the address back into the struct and calls Run for indices
/// taken from a shared counter (<see cref="Interlocked.Add(ref int, int)"/>, a few at a time in long loops) until
/// none are left.</item>
/// <item>The caller drains too, then closes the loop and returns only once every worker that joined it has left,
/// so the frame outlives every use of the address. A worker joins only while the loop is open.</item>
/// <item>Idle workers spin briefly (a next loop usually follows within microseconds), then sleep on a monitor
/// until the next loop opens. They are background threads: they never keep the process alive.</item>
/// </list>
/// One loop at a time: a caller that finds the pool busy (another thread's loop, or a loop started inside a body)
/// gets false from <see cref="TryRun{TBody}"/> and runs its loop serially on its own thread; kernel results never
/// depend on the thread count, so this is correct, and never more than <c>threads</c> threads work on one loop.
/// An exception thrown by the body on any thread stops the hand-out of further indices; once every thread has left
/// the loop, the first exception is rethrown on the caller as it was thrown (not wrapped in an AggregateException,
/// stack trace kept), and the pool is ready for the next loop.
/// </remarks>
internal sealed unsafe class WorkerPool
{
    private static readonly Dictionary<int, WorkerPool> Pools = [];

    /// <summary>The pool for <paramref name="threads"/> threads (at least 2), created on first use.</summary>
    public static WorkerPool ForThreads(int threads)
    {
        lock (Pools)
        {
            if (!Pools.TryGetValue(threads, out var pool)) Pools[threads] = pool = new WorkerPool(threads);
            return pool;
        }
    }

    /// <summary>SpinWait.SpinOnce calls before a thread sleeps: about ten spins growing to a few microseconds, then yields.</summary>
    private const int SpinCount = 40;

    /// <summary>Set in <see cref="_state"/> while workers may join the current loop; the bits below count the workers inside it.</summary>
    private const int Open = 1 << 30;

    // The current loop, written by its caller while no worker is inside (see TryRun).
    private delegate*<WorkerPool, void*, void> _drain;
    private void* _body;
    private int _count;
    private int _batch;
    private int _next;
    private Exception? _error;

    private int _owned;        // 1 while a caller runs a loop
    private int _state;        // Open | workers inside the loop
    private int _generation;   // incremented when a loop opens; idle workers wait for it to change
    private int _sleepers;     // workers asleep on _wake
    private int _callerAsleep; // 1 while the caller sleeps on _done
    private readonly object _wake = new(), _done = new();
    private readonly int _threads;

    private WorkerPool(int threads)
    {
        _threads = threads;
        for (int i = 1; i < threads; i++)
            new Thread(Work) { IsBackground = true, Name = $"MLNet.ConvNet CPU worker {i}/{threads - 1}" }.Start();
    }

    /// <summary>
    /// Runs body.Run(i) for every i in [0, count) on this thread and the pool's workers, or returns false at once,
    /// having run nothing, when the pool is busy with another loop.
    /// </summary>
    public bool TryRun<TBody>(int count, ref TBody body) where TBody : struct, IParallelBody
    {
        if (Interlocked.CompareExchange(ref _owned, 1, 0) != 0) return false;
        _drain = &Drain<TBody>;
        _body = Unsafe.AsPointer(ref body);
        _count = count;
        // Long loops of small bodies hand out indices in batches (fewer trips to the shared counter); about 16
        // batches per thread keep the threads' finishing times within a few percent of the loop.
        _batch = Math.Max(1, count / (16 * _threads));
        _next = 0;
        _error = null;
        Volatile.Write(ref _state, Open); // publishes the fields above to the workers that join
        Exception? error;
        try
        {
            Interlocked.Increment(ref _generation);
            if (Volatile.Read(ref _sleepers) > 0)
                lock (_wake) Monitor.PulseAll(_wake);
            Drain<TBody>(this, _body);
        }
        finally
        {
            // Whatever happened above, no worker may still be inside when this frame (the body) goes away.
            Interlocked.Add(ref _state, -Open);
            WaitForWorkersToLeave();
            error = _error;
            _error = null;
            Volatile.Write(ref _owned, 0);
        }
        if (error is not null) ExceptionDispatchInfo.Throw(error);
        return true;
    }

    /// <summary>Runs the indices left in the current loop; the first exception is kept and stops the hand-out.</summary>
    private static void Drain<TBody>(WorkerPool pool, void* body) where TBody : struct, IParallelBody
    {
        ref TBody b = ref Unsafe.AsRef<TBody>(body);
        int count = pool._count, batch = pool._batch;
        try
        {
            for (int start = Interlocked.Add(ref pool._next, batch) - batch; start < count; start = Interlocked.Add(ref pool._next, batch) - batch)
                for (int i = start, end = Math.Min(count, start + batch); i < end; i++) b.Run(i);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref pool._error, e, null);
            Volatile.Write(ref pool._next, count);
        }
    }

    private void Work()
    {
        int seen = 0;
        while (true)
        {
            seen = WaitForNextLoop(seen);
            if (!TryJoin()) continue;
            _drain(this, _body);
            // The last worker out wakes a sleeping caller; after this the loop's body is never touched again.
            if (Interlocked.Decrement(ref _state) == 0 && Volatile.Read(ref _callerAsleep) != 0)
                lock (_done) Monitor.Pulse(_done);
        }
    }

    /// <summary>Waits until a loop newer than generation <paramref name="seen"/> has opened; returns its generation.</summary>
    private int WaitForNextLoop(int seen)
    {
        var spinner = new SpinWait();
        while (spinner.Count < SpinCount)
        {
            int generation = Volatile.Read(ref _generation);
            if (generation != seen) return generation;
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        lock (_wake)
        {
            // Counting ourselves before the last look pairs with the caller's increment-then-read in TryRun:
            // either it sees a sleeper and pulses, or we see its new generation.
            Interlocked.Increment(ref _sleepers);
            int generation;
            while ((generation = Volatile.Read(ref _generation)) == seen) Monitor.Wait(_wake);
            Interlocked.Decrement(ref _sleepers);
            return generation;
        }
    }

    /// <summary>Enters the current loop if it is still open (a closed loop's caller may already have returned).</summary>
    private bool TryJoin()
    {
        int state = Volatile.Read(ref _state);
        while ((state & Open) != 0)
        {
            int found = Interlocked.CompareExchange(ref _state, state + 1, state);
            if (found == state) return true;
            state = found;
        }
        return false;
    }

    private void WaitForWorkersToLeave()
    {
        var spinner = new SpinWait();
        while (Volatile.Read(ref _state) != 0)
        {
            if (spinner.Count < SpinCount) { spinner.SpinOnce(sleep1Threshold: -1); continue; }
            lock (_done)
            {
                Interlocked.Exchange(ref _callerAsleep, 1); // pairs with the worker's decrement-then-read in Work
                while (Volatile.Read(ref _state) != 0) Monitor.Wait(_done);
                _callerAsleep = 0;
            }
            return;
        }
    }
}
