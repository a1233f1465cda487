using System.Security.Cryptography;
using System.Text;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;

namespace MLNet.ConvNet.Training;

/// <summary>
/// Everything needed to resume training bit for bit: weights, batch-norm running statistics, dropout random
/// state, optimizer state, the trainer's shuffling generator, the epochs completed and their metrics; and the
/// architecture (sample shape and each layer's <see cref="LayerSpec"/>), so that <see cref="LoadNetwork"/> can rebuild
/// the network without the code that made it.
/// </summary>
/// <remarks>
/// Binary format, version 3 (all numbers little-endian):
/// <code>
/// offset  size  field
/// 0       8     magic "MLNCVCKP" (ASCII)
/// 8       4     format version, uint32 = 3 (versions 1 and 2, which end earlier, are still read)
/// 12      8     payload length L, int64
/// 20      L     payload
/// 20+L    32    SHA-256 of the payload
///
/// payload (string = int32 byte count + UTF-8; tensor = string name, int32 rank, int32 dims[rank], float32 values):
///   int32    epochs completed
///   int32    generator word count (0 or 4), then uint64 words (the trainer's xoshiro256** state)
///   int32    network tensor count, then tensors (parameters, then buffers, in network order: "conv1.weight", "bn1.running_mean")
///   int32    random-state count, then per layer: string layer path, int32 word count, uint64 words (dropout: seed, step)
///   byte     1 when an optimizer state follows, else 0; then string kind, int64 step count, int32 tensor count, tensors
///   int32    history count, then per epoch: int32 epoch, float64 train loss, train accuracy, validation loss,
///            validation accuracy (NaN without validation), learning rate, seconds
///   byte     1 when an architecture follows, else 0 (a layer that does not describe itself); then int32 rank and
///            dims of the sample shape, int32 layer count, per layer: string name, string kind, int32 value count,
///            (string key, string value) pairs                                                    [version 2 on]
///   int32    steps completed in the epoch after the completed ones (0: written at an epoch's end), int32 count and
///            float32 values (per completed step: summed loss, correct count), float64 seconds spent in it [version 3]
/// </code>
/// A file that is shorter than its header promises, longer, or whose checksum does not match is rejected with an
/// <see cref="InvalidDataException"/> saying which; so is a checkpoint whose tensor names or shapes differ from
/// the network it is restored into. Files are written to a temporary name and then moved over the target, so a
/// crash while saving leaves the previous checkpoint intact.
/// </remarks>
public sealed class Checkpoint
{
    private static ReadOnlySpan<byte> Magic => "MLNCVCKP"u8;
    /// <summary>The format version this code writes and reads.</summary>
    public const uint FormatVersion = 3;
    /// <summary>The oldest format version this code reads (version 1 has no architecture).</summary>
    public const uint OldestReadableVersion = 1;
    private const int HeaderSize = 20, ChecksumSize = 32;

    /// <summary>Epochs completed when the checkpoint was taken.</summary>
    public int Epoch { get; init; }
    /// <summary>
    /// Steps completed in epoch <see cref="Epoch"/> + 1 when the checkpoint was written mid-epoch; 0 at an epoch's end.
    /// A resumed trainer continues with the next step of that epoch, in the same order.
    /// </summary>
    public int Step { get; init; }
    /// <summary>Mid-epoch: per completed step of the epoch, its summed loss and correct count (for the epoch's metrics).</summary>
    public float[] StepStatistics { get; init; } = [];
    /// <summary>Mid-epoch: seconds spent in the epoch so far.</summary>
    public double EpochSeconds { get; init; }
    /// <summary>
    /// The trainer's generator state (4 words), or empty: at an epoch's end, the state that draws the next epoch's
    /// order; mid-epoch, the state that draws the current epoch's order (so a resumed run visits the same order).
    /// </summary>
    public ulong[] RngState { get; init; } = [];
    /// <summary>Parameters and buffers by full name.</summary>
    public IReadOnlyList<NamedArray> NetworkTensors { get; init; } = [];
    /// <summary>Random state of the layers that have one (dropout), by layer path.</summary>
    public IReadOnlyList<(string Layer, ulong[] State)> RandomStates { get; init; } = [];
    /// <summary>The optimizer's state, or null.</summary>
    public OptimizerState? Optimizer { get; init; }
    /// <summary>Metrics of the completed epochs.</summary>
    public IReadOnlyList<EpochMetrics> History { get; init; } = [];
    /// <summary>The network's sample shape and layers, or null (a version 1 file, an unbuilt network, or a layer without a <see cref="Layer.Spec"/>).</summary>
    public NetworkArchitecture? Architecture { get; init; }

    /// <summary>Copies the state of <paramref name="network"/> (and <paramref name="optimizer"/>, <paramref name="rng"/>) to the host.</summary>
    public static Checkpoint Capture(Network network, Optimizer? optimizer = null, int epoch = 0, Rng? rng = null, IEnumerable<EpochMetrics>? history = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        return new Checkpoint
        {
            Epoch = epoch,
            RngState = rng?.GetState() ?? [],
            NetworkTensors = network.StateTensors().Select(t => new NamedArray(t.Name, t.Value.Shape, t.Value.ToHost())).ToArray(),
            RandomStates = RandomLayers(network).Select(l => (l.Path, l.Layer.RandomState)).ToArray(),
            Optimizer = optimizer?.GetState(),
            History = history?.ToArray() ?? [],
            Architecture = NetworkArchitecture.Of(network),
        };
    }

    /// <summary>This checkpoint marked as written after <paramref name="step"/> steps of its epoch (see <see cref="Step"/>).</summary>
    internal Checkpoint AtStep(int step, float[] stepStatistics, double seconds) => new()
    {
        Epoch = Epoch, RngState = RngState, NetworkTensors = NetworkTensors, RandomStates = RandomStates, Optimizer = Optimizer,
        History = History, Architecture = Architecture, Step = step, StepStatistics = stepStatistics, EpochSeconds = seconds,
    };

    /// <summary>
    /// Rebuilds the network stored in the checkpoint file <paramref name="path"/> on <paramref name="backend"/> (the CPU
    /// when null) from its layer specs, and restores its weights, buffers and random state. Layer kinds outside this
    /// library must be registered first (<see cref="Layer.Register"/>). Throws <see cref="InvalidDataException"/> when
    /// the file stores no architecture (format version 1, or a layer that does not describe itself).
    /// </summary>
    public static Network LoadNetwork(string path, IBackend? backend = null)
    {
        var checkpoint = Load(path);
        try { return checkpoint.ToNetwork(backend); }
        catch (InvalidDataException e) { throw new InvalidDataException($"Checkpoint '{path}': {e.Message}", e); }
    }

    /// <summary>A new network built from <see cref="Architecture"/> on <paramref name="backend"/>, holding this checkpoint's state.</summary>
    public Network ToNetwork(IBackend? backend = null)
    {
        if (Architecture is not { } arch)
            throw new InvalidDataException("it stores no architecture (written in format version 1, or a layer did not describe itself); build the network in code and call Restore.");
        var network = arch.Create(backend);
        Restore(network);
        return network;
    }

    /// <summary>
    /// Copies the saved state into <paramref name="network"/> (and <paramref name="optimizer"/>, <paramref name="rng"/>).
    /// Every name and shape is checked before anything is written.
    /// </summary>
    public void Restore(Network network, Optimizer? optimizer = null, Rng? rng = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        var targets = network.StateTensors().ToArray();
        if (targets.Length != NetworkTensors.Count)
            throw new InvalidDataException($"The checkpoint holds {NetworkTensors.Count} network tensors but the network has {targets.Length}; it was saved from another architecture.");
        for (int i = 0; i < targets.Length; i++)
            if (targets[i].Name != NetworkTensors[i].Name || targets[i].Value.Shape != NetworkTensors[i].Shape)
                throw new InvalidDataException($"Checkpoint tensor {i} is '{NetworkTensors[i].Name}' {NetworkTensors[i].Shape} but the network has '{targets[i].Name}' {targets[i].Value.Shape}.");
        var layers = RandomLayers(network).ToArray();
        if (layers.Length != RandomStates.Count || layers.Zip(RandomStates).Any(p => p.First.Path != p.Second.Layer))
            throw new InvalidDataException($"The checkpoint's random layers [{string.Join(", ", RandomStates.Select(r => r.Layer))}] differ from the network's [{string.Join(", ", layers.Select(l => l.Path))}].");
        if (optimizer is not null && Optimizer is null) throw new InvalidDataException("The checkpoint holds no optimizer state.");
        if (rng is not null && RngState.Length != 4) throw new InvalidDataException("The checkpoint holds no generator state.");

        if (optimizer is not null) optimizer.SetState(Optimizer!); // checks its own names first
        for (int i = 0; i < targets.Length; i++) targets[i].Value.CopyFromHost(NetworkTensors[i].Data);
        for (int i = 0; i < layers.Length; i++) layers[i].Layer.RandomState = RandomStates[i].State;
        rng?.SetState(RngState);
    }

    private static IEnumerable<(string Path, Layer Layer)> RandomLayers(Network network)
    {
        IEnumerable<(string, Layer)> Walk(Layer l, string prefix) =>
            l.Children.Count > 0 ? l.Children.SelectMany(c => Walk(c, prefix + l.Name + "."))
            : l.RandomState.Length > 0 ? [(prefix + l.Name, l)] : [];
        return network.Layers.SelectMany(l => Walk(l, ""));
    }

    /// <summary>Writes the checkpoint to <paramref name="path"/> atomically (temporary file, then move).</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string tmp = path + ".tmp";
        using (var f = File.Create(tmp)) Write(f);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Reads a checkpoint file; throws <see cref="InvalidDataException"/> naming the file when it is truncated, corrupted or not a checkpoint.</summary>
    public static Checkpoint Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        try { return Read(File.ReadAllBytes(path)); }
        catch (InvalidDataException e) { throw new InvalidDataException($"Checkpoint '{path}': {e.Message}", e); }
    }

    /// <summary>Writes header, payload and checksum to <paramref name="stream"/>.</summary>
    public void Write(Stream stream)
    {
        var payload = new MemoryStream();
        using (var w = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true)) WritePayload(w);
        var bytes = payload.GetBuffer().AsSpan(0, (int)payload.Length);
        using var h = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        h.Write(Magic);
        h.Write(FormatVersion);
        h.Write((long)bytes.Length);
        h.Write(bytes);
        h.Write(SHA256.HashData(bytes));
    }

    /// <summary>Parses a whole checkpoint file's bytes.</summary>
    public static Checkpoint Read(ReadOnlySpan<byte> file)
    {
        if (file.Length < HeaderSize)
            throw new InvalidDataException($"truncated: {file.Length} bytes, shorter than the {HeaderSize}-byte header.");
        if (!file[..8].SequenceEqual(Magic))
            throw new InvalidDataException($"not an MLNet.ConvNet checkpoint (the first bytes are not \"MLNCVCKP\").");
        uint version = BitConverter.ToUInt32(file[8..12]);
        if (version < OldestReadableVersion || version > FormatVersion)
            throw new InvalidDataException($"format version {version} is not supported (this build reads versions {OldestReadableVersion} to {FormatVersion}).");
        long length = BitConverter.ToInt64(file[12..20]);
        long expected = HeaderSize + length + ChecksumSize;
        if (length < 0 || file.Length < expected)
            throw new InvalidDataException($"truncated: the header promises {expected} bytes but the file has {file.Length}.");
        if (file.Length > expected)
            throw new InvalidDataException($"{file.Length - expected} unexpected bytes after the checksum (the header promises {expected} bytes).");
        var payload = file.Slice(HeaderSize, (int)length);
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(file.Slice(HeaderSize + (int)length, ChecksumSize)))
            throw new InvalidDataException("corrupted: the SHA-256 checksum does not match the contents.");
        try
        {
            using var r = new BinaryReader(new MemoryStream(payload.ToArray()), Encoding.UTF8);
            var c = ReadPayload(r, version);
            if (r.BaseStream.Position != r.BaseStream.Length) throw new InvalidDataException("the payload has unread bytes.");
            return c;
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or OverflowException)
        {
            throw new InvalidDataException($"malformed payload: {e.Message}", e);
        }
    }

    private void WritePayload(BinaryWriter w)
    {
        w.Write(Epoch);
        WriteWords(w, RngState);
        w.Write(NetworkTensors.Count);
        foreach (var t in NetworkTensors) WriteTensor(w, t);
        w.Write(RandomStates.Count);
        foreach (var (layer, state) in RandomStates) { w.Write(layer); WriteWords(w, state); }
        w.Write((byte)(Optimizer is null ? 0 : 1));
        if (Optimizer is { } o)
        {
            w.Write(o.Kind);
            w.Write(o.StepCount);
            w.Write(o.Tensors.Count);
            foreach (var t in o.Tensors) WriteTensor(w, t);
        }
        w.Write(History.Count);
        foreach (var m in History)
        {
            w.Write(m.Epoch);
            foreach (double v in (double[])[m.TrainLoss, m.TrainAccuracy, m.ValidationLoss, m.ValidationAccuracy, m.LearningRate, m.Seconds]) w.Write(v);
        }
        w.Write((byte)(Architecture is null ? 0 : 1));
        WriteArchitecture(w);
        w.Write(Step);
        w.Write(StepStatistics.Length);
        foreach (float v in StepStatistics) w.Write(v);
        w.Write(EpochSeconds);
    }

    private void WriteArchitecture(BinaryWriter w)
    {
        if (Architecture is { } a)
        {
            w.Write(a.SampleShape.Rank);
            foreach (int d in a.SampleShape.AsSpan()) w.Write(d);
            w.Write(a.Layers.Count);
            foreach (var (name, spec) in a.Layers)
            {
                w.Write(name);
                w.Write(spec.Kind);
                w.Write(spec.Values.Count);
                foreach (var (key, value) in spec.Values) { w.Write(key); w.Write(value); }
            }
        }
    }

    private static Checkpoint ReadPayload(BinaryReader r, uint version)
    {
        int epoch = r.ReadInt32();
        if (epoch < 0) throw new InvalidDataException($"epoch {epoch} is negative.");
        var rng = ReadWords(r);
        var tensors = ReadList(r, ReadTensor);
        var random = ReadList(r, rr => (rr.ReadString(), ReadWords(rr)));
        OptimizerState? opt = null;
        if (r.ReadByte() == 1)
        {
            string kind = r.ReadString();
            long steps = r.ReadInt64();
            opt = new OptimizerState(kind, steps, ReadList(r, ReadTensor));
        }
        var history = ReadList(r, rr => new EpochMetrics(rr.ReadInt32(), rr.ReadDouble(), rr.ReadDouble(), rr.ReadDouble(), rr.ReadDouble(), rr.ReadDouble(), rr.ReadDouble()));
        NetworkArchitecture? architecture = null;
        if (version >= 2 && r.ReadByte() == 1)
        {
            int rank = r.ReadInt32();
            if (rank < 1 || rank > 8) throw new InvalidDataException($"the architecture's sample shape has rank {rank}.");
            var dims = new int[rank];
            for (int i = 0; i < rank; i++) dims[i] = r.ReadInt32();
            var layers = ReadList(r, rr =>
            {
                string name = rr.ReadString(), kind = rr.ReadString();
                var values = ReadList(rr, r3 => KeyValuePair.Create(r3.ReadString(), r3.ReadString()));
                return (name, new LayerSpec(kind, values));
            });
            architecture = new NetworkArchitecture(new Shape(dims), layers);
        }
        int step = 0;
        float[] stepStatistics = [];
        double seconds = 0;
        if (version >= 3)
        {
            step = r.ReadInt32();
            if (step < 0) throw new InvalidDataException($"step {step} is negative.");
            stepStatistics = ReadList(r, rr => rr.ReadSingle()).ToArray();
            if (stepStatistics.Length != 2 * step) throw new InvalidDataException($"{step} steps need {2 * step} step statistics; the file has {stepStatistics.Length}.");
            seconds = r.ReadDouble();
        }
        return new Checkpoint
        {
            Epoch = epoch, RngState = rng, NetworkTensors = tensors, RandomStates = random, Optimizer = opt, History = history, Architecture = architecture,
            Step = step, StepStatistics = stepStatistics, EpochSeconds = seconds,
        };
    }

    private static void WriteTensor(BinaryWriter w, NamedArray t)
    {
        w.Write(t.Name);
        w.Write(t.Shape.Rank);
        foreach (int d in t.Shape.AsSpan()) w.Write(d);
        w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.AsSpan()));
    }

    private static NamedArray ReadTensor(BinaryReader r)
    {
        string name = r.ReadString();
        int rank = r.ReadInt32();
        if (rank < 1 || rank > 8) throw new InvalidDataException($"tensor '{name}' has rank {rank}.");
        var dims = new int[rank];
        for (int i = 0; i < rank; i++) dims[i] = r.ReadInt32();
        var shape = new Shape(dims);
        if (shape.Length * 4L > r.BaseStream.Length - r.BaseStream.Position)
            throw new EndOfStreamException($"tensor '{name}' {shape} needs {shape.Length * 4L} bytes; fewer remain.");
        var data = new float[shape.Length];
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan());
        if (r.Read(bytes) != bytes.Length) throw new EndOfStreamException($"tensor '{name}' {shape} is cut short.");
        return new NamedArray(name, shape, data);
    }

    private static void WriteWords(BinaryWriter w, ulong[] words)
    {
        w.Write(words.Length);
        foreach (ulong v in words) w.Write(v);
    }

    private static ulong[] ReadWords(BinaryReader r) => ReadList(r, rr => rr.ReadUInt64()).ToArray();

    private static T[] ReadList<T>(BinaryReader r, Func<BinaryReader, T> item)
    {
        int n = r.ReadInt32();
        // Every item takes at least one byte, so a count beyond the remaining bytes is corruption, not a huge allocation.
        if (n < 0 || n > r.BaseStream.Length - r.BaseStream.Position)
            throw new InvalidDataException($"a list count of {n} does not fit in the remaining {r.BaseStream.Length - r.BaseStream.Position} bytes.");
        var a = new T[n];
        for (int i = 0; i < n; i++) a[i] = item(r);
        return a;
    }
}

/// <summary>A sequential network without its weights: the sample shape and each top-level layer's name and spec.</summary>
public sealed record NetworkArchitecture(Shape SampleShape, IReadOnlyList<(string Name, LayerSpec Spec)> Layers)
{
    /// <summary>The architecture of built <paramref name="network"/>; null when it is not built or a layer has no <see cref="Layer.Spec"/>.</summary>
    public static NetworkArchitecture? Of(Network network)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (network.InputShape is not { } sample) return null;
        var layers = new List<(string, LayerSpec)>();
        foreach (var l in network.Layers)
        {
            if (l.Spec is not { } spec) return null;
            layers.Add((l.Name!, spec));
        }
        return new NetworkArchitecture(sample, layers);
    }

    /// <summary>A new network of these layers (made by <see cref="Layer.FromSpec"/>) on <paramref name="backend"/>, built for <see cref="SampleShape"/> with freshly drawn weights.</summary>
    public Network Create(IBackend? backend = null, ulong seed = 0)
    {
        var layers = Layers.Select(l => { var layer = Layer.FromSpec(l.Spec); layer.Name = l.Name; return layer; });
        return new Network(layers, backend).Build(SampleShape, seed);
    }
}
