using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MLNet.ConvNet.Data;

/// <summary>
/// Samples decoded once into a file (written by <see cref="SampleCacheWriter"/>) and read back by index: the
/// <see cref="IDataset"/> for data larger than memory. Only the labels (4 bytes a sample) stay in memory.
/// </summary>
/// <remarks>
/// <para>The file holds the samples one after the other, each <c>SampleShape.Length</c> values, as bytes (pixels that
/// came as 8-bit values: a quarter of the size) or as float32 (little-endian); no header. A byte reads back as the
/// float it came from, so batches hold exactly the values an in-memory dataset would.</para>
/// <para>Each sample is read with one positioned read (<see cref="RandomAccess.Read(SafeFileHandle, Span{byte}, long)"/>),
/// in whatever order the trainer asks: the epoch's order is the same as in memory. The file is not memory-mapped on
/// purpose: mapped pages that were touched count in the process's working set (up to the whole file), while the
/// operating system's page cache, which serves these reads, does not.</para>
/// <para><see cref="Dispose"/> closes the file and deletes it unless <see cref="KeepFile"/>. One
/// <see cref="CopyBatch"/> runs at a time (a lock; the trainer's <see cref="BatchReader"/> has one thread).</para>
/// </remarks>
public sealed class DiskSampleCache : IDataset, IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly int[] _labels;
    private readonly byte[] _bytes; // one sample's bytes, when stored as bytes
    private readonly object _lock = new();
    private bool _disposed;

    internal DiskSampleCache(string path, bool storesBytes, int[] labels, Shape sampleShape, int classCount, bool keepFile)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 1);
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classCount)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i], $"Label {labels[i]} of sample {i} is outside [0, {classCount}).");
        Path = path; StoresBytes = storesBytes; _labels = labels; SampleShape = sampleShape; ClassCount = classCount; KeepFile = keepFile;
        _bytes = storesBytes ? new byte[sampleShape.Length] : [];
        _file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        long expected = (long)labels.Length * SampleBytes;
        long actual = RandomAccess.GetLength(_file);
        if (actual != expected)
        {
            _file.Dispose();
            throw new InvalidDataException($"Sample cache '{path}' holds {actual} bytes; {labels.Length} samples of {sampleShape} as {(storesBytes ? "bytes" : "float32")} need {expected}.");
        }
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }
    /// <summary>True when the samples are stored as bytes (every value was a whole number in 0..255), false for float32.</summary>
    public bool StoresBytes { get; }
    /// <summary>Whether <see cref="Dispose"/> leaves the file in place.</summary>
    public bool KeepFile { get; }
    /// <summary>Bytes a sample takes in the file.</summary>
    public long SampleBytes => (long)SampleShape.Length * (StoresBytes ? 1 : 4);
    /// <summary>The file's size.</summary>
    public long FileBytes => SampleBytes * Count;

    /// <inheritdoc/>
    public int Count => _labels.Length;
    /// <inheritdoc/>
    public Shape SampleShape { get; }
    /// <inheritdoc/>
    public int ClassCount { get; }
    /// <summary>The labels (held in memory; not a copy).</summary>
    public ReadOnlySpan<int> Labels => _labels;

    /// <inheritdoc/>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> features, Span<int> labels)
    {
        int len = SampleShape.Length;
        if (features.Length < indices.Length * len || labels.Length < indices.Length)
            throw new ArgumentException($"CopyBatch: {indices.Length} samples need {indices.Length * len} feature slots and {indices.Length} label slots; got {features.Length} and {labels.Length}.");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            for (int i = 0; i < indices.Length; i++)
            {
                int s = indices[i];
                if ((uint)s >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), s, $"Sample index {s} is outside [0, {Count}).");
                var dst = features.Slice(i * len, len);
                if (StoresBytes)
                {
                    ReadExactly(_bytes, s * SampleBytes);
                    for (int j = 0; j < len; j++) dst[j] = _bytes[j];
                }
                else ReadExactly(MemoryMarshal.AsBytes(dst), s * SampleBytes); // float32 little-endian, as written
                labels[i] = _labels[s];
            }
        }
    }

    private void ReadExactly(Span<byte> buffer, long offset)
    {
        while (buffer.Length > 0)
        {
            int n = RandomAccess.Read(_file, buffer, offset);
            if (n == 0) throw new InvalidDataException($"Sample cache '{Path}' ended at byte {offset}; was it truncated while training?");
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <summary>Closes the file and deletes it unless <see cref="KeepFile"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _file.Dispose();
            if (!KeepFile) File.Delete(Path);
        }
    }
}

/// <summary>
/// Writes samples one at a time to a <see cref="DiskSampleCache"/> file, as bytes while every value is a whole number
/// in 0..255 (8-bit pixels), else as float32.
/// </summary>
/// <remarks>
/// The choice is made from the values, as they stream in: the file starts as bytes, and the first sample with
/// another value (a fraction, a negative number, -0) makes the writer rewrite what it has as float32 once and
/// carry on in float32. Samples given as bytes (<see cref="Add(ReadOnlySpan{byte}, int)"/>) are bytes already.
/// </remarks>
public sealed class SampleCacheWriter : IDisposable
{
    private const int BufferBytes = 1 << 20;
    private FileStream? _stream;
    private readonly List<int> _labels = [];
    private readonly byte[] _row;
    private bool _completed;

    /// <summary>Creates (or replaces) the file <paramref name="path"/> for samples of <paramref name="sampleShape"/>.</summary>
    public SampleCacheWriter(string path, Shape sampleShape)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("The sample cache writes float32 little-endian; this machine is big-endian.");
        Path = path; SampleShape = sampleShape;
        _row = new byte[sampleShape.Length * 4];
        _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, BufferBytes);
    }

    /// <summary>The file written.</summary>
    public string Path { get; }
    /// <summary>The shape of a sample.</summary>
    public Shape SampleShape { get; }
    /// <summary>True while every sample written was bytes (the file holds bytes).</summary>
    public bool StoresBytes { get; private set; } = true;
    /// <summary>Samples written.</summary>
    public int Count => _labels.Count;
    /// <summary>The labels written so far (in memory).</summary>
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>Appends a sample of float values (<c>SampleShape.Length</c> of them) and its label.</summary>
    public void Add(ReadOnlySpan<float> features, int label)
    {
        var stream = Open();
        CheckLength(features.Length);
        if (StoresBytes && !AllBytes(features)) { SwitchToFloats(); stream = _stream!; }
        if (StoresBytes)
        {
            for (int j = 0; j < features.Length; j++) _row[j] = (byte)features[j];
            stream.Write(_row, 0, features.Length);
        }
        else stream.Write(MemoryMarshal.AsBytes(features));
        _labels.Add(label);
    }

    /// <summary>Appends a sample of 8-bit values (<c>SampleShape.Length</c> of them) and its label.</summary>
    public void Add(ReadOnlySpan<byte> pixels, int label)
    {
        var stream = Open();
        CheckLength(pixels.Length);
        if (StoresBytes) stream.Write(pixels);
        else
        {
            var floats = MemoryMarshal.Cast<byte, float>(_row.AsSpan());
            for (int j = 0; j < pixels.Length; j++) floats[j] = pixels[j];
            stream.Write(_row, 0, pixels.Length * 4);
        }
        _labels.Add(label);
    }

    /// <summary>
    /// Closes the file and opens it as a <see cref="DiskSampleCache"/> of <paramref name="classCount"/> classes (labels
    /// must lie in [0, classCount)); its Dispose deletes the file unless <paramref name="keepFile"/>.
    /// </summary>
    public DiskSampleCache Complete(int classCount, bool keepFile = false)
    {
        Open().Dispose();
        _stream = null;
        _completed = true;
        return new DiskSampleCache(Path, StoresBytes, _labels.ToArray(), SampleShape, classCount, keepFile);
    }

    /// <summary>Closes the file; a writer not completed deletes it (an aborted cache is of no use).</summary>
    public void Dispose()
    {
        if (_completed) return;
        _stream?.Dispose();
        _stream = null;
        _completed = true;
        File.Delete(Path);
    }

    /// <summary>True when every value is a whole number in 0..255 whose byte reads back as the same float bits (so not -0).</summary>
    public static bool AllBytes(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            if (!(v >= 0 && v <= 255) || BitConverter.SingleToUInt32Bits(v) != BitConverter.SingleToUInt32Bits((byte)v)) return false;
        return true;
    }

    private FileStream Open()
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        return _stream!;
    }

    private void CheckLength(int length)
    {
        if (length != SampleShape.Length)
            throw new ArgumentException($"A sample of shape {SampleShape} holds {SampleShape.Length} values; got {length}.");
    }

    /// <summary>Rewrites the byte samples written so far as float32 in a new file that replaces the old one.</summary>
    private void SwitchToFloats()
    {
        _stream!.Dispose();
        string floats = Path + ".float32";
        int len = SampleShape.Length;
        using (var from = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.None, BufferBytes))
        using (var to = new FileStream(floats, FileMode.Create, FileAccess.Write, FileShare.None, BufferBytes))
        {
            var values = MemoryMarshal.Cast<byte, float>(_row.AsSpan());
            var bytes = new byte[len];
            for (int i = 0; i < _labels.Count; i++)
            {
                from.ReadExactly(bytes);
                for (int j = 0; j < len; j++) values[j] = bytes[j];
                to.Write(_row, 0, len * 4);
            }
        }
        File.Move(floats, Path, overwrite: true);
        _stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read, BufferBytes);
        StoresBytes = false;
    }
}
