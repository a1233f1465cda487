using System.Runtime.CompilerServices;

namespace MLNet.ConvNet.Backends.Cuda;

/// <summary>Device time of one kernel (an IBackend member) over the profiled calls.</summary>
public readonly record struct KernelTime(string Kernel, int Calls, double Milliseconds);

/// <summary>
/// Where a training step's device time goes: a <see cref="DelegatingBackend"/> over a <see cref="CudaBackend"/> that
/// records a CUDA event on the stream before every call it forwards. The time between the event before call i and
/// the one before call i + 1 is charged to call i: the device time of its kernels plus any time the device then sat
/// idle waiting for the host to queue the next call (so host overhead shows up, charged to the call before it).
/// Pass it as the trainer's CustomBackend; call <see cref="Summary"/> afterwards.
/// </summary>
/// <remarks>
/// Calls before <c>skipCalls</c> (warm-up: algorithm search, first allocations) are not recorded, nor any after
/// <c>maxCalls</c> recorded ones. Recording an event costs the host a few microseconds per call, so a profiled run is
/// slower than a plain one; the shares are what it is for.
/// </remarks>
public sealed class CudaKernelProfiler(CudaBackend gpu, int skipCalls = 5000, int maxCalls = 20000) : DelegatingBackend(gpu)
{
    private readonly List<(string Kernel, nint Event)> _marks = [];
    private int _seen;

    protected override void OnKernel([CallerMemberName] string kernel = "")
    {
        if (_seen++ < skipCalls || _marks.Count >= maxCalls) return;
        _marks.Add((kernel, gpu.RecordEvent()));
    }

    /// <summary>Per kernel: calls and device milliseconds, largest first (waits for the device; releases the events).</summary>
    public IReadOnlyList<KernelTime> Summary()
    {
        gpu.Synchronize();
        var totals = new Dictionary<string, (int Calls, double Ms)>();
        for (int i = 0; i + 1 < _marks.Count; i++)
        {
            double ms = gpu.ElapsedAndRelease(_marks[i].Event, _marks[i + 1].Event);
            totals.TryGetValue(_marks[i].Kernel, out var t);
            totals[_marks[i].Kernel] = (t.Calls + 1, t.Ms + ms);
        }
        if (_marks.Count > 0) gpu.ReleaseEvent(_marks[^1].Event);
        _marks.Clear();
        return totals.Select(kv => new KernelTime(kv.Key, kv.Value.Calls, kv.Value.Ms)).OrderByDescending(k => k.Milliseconds).ToList();
    }
}
