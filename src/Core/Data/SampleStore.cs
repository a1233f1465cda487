namespace MLNet.ConvNet.Data;

/// <summary>Where samples read once from a stream are kept for training.</summary>
public enum SampleStorage
{
    /// <summary>In memory while the features as float32 fit under the memory limit, else a disk cache (the reason says which).</summary>
    Auto,
    /// <summary>One float32 array in memory (<see cref="InMemoryDataset"/>).</summary>
    Memory,
    /// <summary>A decode-once file read back by index (<see cref="DiskSampleCache"/>).</summary>
    Disk,
}

/// <summary>
/// Collects samples that arrive one at a time (rows of a stream read once) into an in-memory dataset or a disk
/// cache, as <see cref="SampleStorage"/> asks, and says which and why (<see cref="Reason"/>).
/// </summary>
/// <remarks>
/// Auto: with the number of samples known in advance the choice is made at once (float32 bytes against the limit);
/// otherwise samples go to memory until they pass the limit, then everything so far moves to a disk cache and the
/// rest follows it there, so memory never holds more than about the limit. Memory keeps today's layout: one float32
/// array; when the count is not known it is filled in chunks that are joined at the end (for a moment twice the size).
/// </remarks>
public sealed class SampleStore : IDisposable
{
    private const int ChunkSamples = 4096;
    private readonly SampleStorage _storage;
    private readonly long _memoryLimit;
    private readonly string _directory;
    private readonly bool _keepFile;
    private readonly int _len;
    private readonly List<float[]> _chunks = [];  // in memory, count unknown: ChunkSamples samples each
    private float[]? _exact;                          // in memory, count known: one array of that size
    private readonly List<int> _labels = [];
    private SampleCacheWriter? _writer;

    /// <summary>
    /// A store for samples of <paramref name="sampleShape"/>. <paramref name="memoryLimitBytes"/>: Auto's limit on the
    /// float32 features in memory. <paramref name="directory"/>: where a cache file goes (a new file named after
    /// <paramref name="name"/>). <paramref name="expectedCount"/>: the number of samples when known. <paramref name="keepFile"/>:
    /// whether the cache's Dispose leaves its file.
    /// </summary>
    public SampleStore(Shape sampleShape, SampleStorage storage, long memoryLimitBytes, string directory, string name,
        long? expectedCount = null, bool keepFile = false)
    {
        if (!Enum.IsDefined(storage)) throw new ArgumentOutOfRangeException(nameof(storage), storage, "Unknown sample storage.");
        ArgumentOutOfRangeException.ThrowIfNegative(memoryLimitBytes);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        SampleShape = sampleShape; _storage = storage; _memoryLimit = memoryLimitBytes; _directory = directory; _keepFile = keepFile;
        _len = sampleShape.Length;
        Name = name;
        long? floatBytes = expectedCount * _len * 4;
        string limit = $"{Megabytes(memoryLimitBytes)} limit";
        if (storage == SampleStorage.Disk) StartDisk("forced");
        else if (storage == SampleStorage.Memory) Reason = "in memory (forced)";
        else if (floatBytes > memoryLimitBytes) StartDisk($"{expectedCount:N0} samples take {Megabytes(floatBytes.Value)} as float32, over the {limit}");
        else if (floatBytes is { } known) Reason = $"in memory: {expectedCount:N0} samples take {Megabytes(known)} as float32, within the {limit}";
        if (floatBytes is { } exact && _writer is null) _exact = new float[exact / 4]; // filled in place: no join at the end
    }

    /// <summary>The shape of a sample.</summary>
    public Shape SampleShape { get; }
    /// <summary>What the data is called in messages and in the cache file's name ("training").</summary>
    public string Name { get; }
    /// <summary>Samples added.</summary>
    public int Count => _labels.Count;
    /// <summary>True once the samples go to a disk cache.</summary>
    public bool OnDisk => _writer is not null;
    /// <summary>Where the samples are kept and why, for a log line; final after <see cref="Build"/>.</summary>
    public string Reason { get; private set; } = "";

    /// <summary>Appends a sample (<c>SampleShape.Length</c> values) and its label.</summary>
    public void Add(ReadOnlySpan<float> features, int label)
    {
        if (features.Length != _len) throw new ArgumentException($"A sample of shape {SampleShape} holds {_len} values; got {features.Length}.", nameof(features));
        if (_writer is { } writer) { writer.Add(features, label); _labels.Add(label); return; }
        if (_storage == SampleStorage.Auto && (long)(Count + 1) * _len * 4 > _memoryLimit) { Spill(); Add(features, label); return; }
        if (_exact is not null && _exact.Length < (long)(Count + 1) * _len) ExactToChunks(); // more samples than announced
        if (_exact is not null) features.CopyTo(_exact.AsSpan(Count * _len));
        else
        {
            int slot = Count % ChunkSamples;
            if (slot == 0) _chunks.Add(new float[ChunkSamples * _len]);
            features.CopyTo(_chunks[^1].AsSpan(slot * _len));
        }
        _labels.Add(label);
    }

    /// <summary>
    /// The dataset of <paramref name="classCount"/> classes: an <see cref="InMemoryDataset"/> or a
    /// <see cref="DiskSampleCache"/> (the caller disposes it, which deletes its file).
    /// </summary>
    public IDataset Build(int classCount)
    {
        if (_writer is { } writer)
        {
            _writer = null;
            var cache = writer.Complete(classCount, _keepFile);
            Reason += $"; {cache.Count:N0} samples, {Megabytes(cache.FileBytes)} as {(cache.StoresBytes ? "bytes (8-bit values)" : "float32")} in {cache.Path}";
            return cache;
        }
        if (Reason == "") Reason = $"in memory: {Count:N0} samples take {Megabytes((long)Count * _len * 4)} as float32, within the {Megabytes(_memoryLimit)} limit";
        return new InMemoryDataset(Joined(), _labels.ToArray(), SampleShape, classCount);
    }

    /// <summary>The labels added (in memory whatever the storage).</summary>
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>Deletes an unfinished cache file (a built cache is the caller's to dispose).</summary>
    public void Dispose() { _writer?.Dispose(); _writer = null; _chunks.Clear(); _exact = null; }

    /// <summary>Sample <paramref name="i"/> held in memory.</summary>
    private Span<float> InMemory(int i) => _exact is not null ? _exact.AsSpan(i * _len, _len)
        : _chunks[i / ChunkSamples].AsSpan(i % ChunkSamples * _len, _len);

    private float[] Joined()
    {
        long total = (long)Count * _len;
        if (_exact is not null && _exact.Length == total) return _exact;
        var all = new float[total];
        for (int i = 0; i < Count; i++) InMemory(i).CopyTo(all.AsSpan(i * _len, _len));
        _chunks.Clear(); _exact = null;
        return all;
    }

    private void ExactToChunks()
    {
        for (int i = 0; i < Count; i++)
        {
            if (i % ChunkSamples == 0) _chunks.Add(new float[ChunkSamples * _len]);
            _exact.AsSpan(i * _len, _len).CopyTo(_chunks[^1].AsSpan(i % ChunkSamples * _len));
        }
        _exact = null;
    }

    private void StartDisk(string why)
    {
        Directory.CreateDirectory(_directory);
        string path = System.IO.Path.Combine(_directory, $"convnet-{Name}-{Environment.ProcessId}-{Guid.NewGuid():N}.samples");
        _writer = new SampleCacheWriter(path, SampleShape);
        Reason = $"disk cache ({why})";
    }

    /// <summary>Auto passing its limit: the samples in memory move to a new disk cache, which takes the rest.</summary>
    private void Spill()
    {
        StartDisk($"more than {Count:N0} samples, over the {Megabytes(_memoryLimit)} limit as float32");
        var labels = _labels.ToArray();
        _labels.Clear();
        for (int i = 0; i < labels.Length; i++)
        {
            _writer!.Add(InMemory(i), labels[i]);
            _labels.Add(labels[i]);
        }
        _chunks.Clear(); _exact = null;
    }

    private static string Megabytes(long bytes) => $"{bytes / 1e6:N0} MB";
}
