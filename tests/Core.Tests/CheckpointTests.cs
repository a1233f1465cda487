using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Training;
using Xunit;
using CrossEntropy = MLNet.ConvNet.Ops.CrossEntropy;

namespace MLNet.ConvNet.Tests;

/// <summary>A temporary directory removed at the end of a test.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("mlnet-convnet-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() => Directory.Delete(Path, recursive: true);
}

public class CheckpointTests
{
    private static readonly Shape Sample = new(1, 8, 8);

    /// <summary>A small net with every kind of state: weights, batch-norm buffers, dropout random state.</summary>
    internal static Network SmallNet(ulong seed, Backends.IBackend? backend = null) => new Network(
    [
        new Conv(4, 3, Conv.DefaultOptions with { Padding = 1 }), new BatchNorm(), Activation.Relu(), new Pool(),
        new Flatten(), new Dense(16), Activation.Relu(), new Dropout(0.3f), new Dense(3),
    ], backend).Build(Sample, seed);

    /// <summary>A network and optimizer after two training steps, so every piece of state is non-trivial.</summary>
    private static (Network Net, Adam Opt) Trained()
    {
        var net = SmallNet(1);
        var opt = new Adam(net.Parameters, 1e-2);
        var x = Tensor.FromHost(TestKit.TestData.Uniform(new Random(2), 6 * 64, 1f), 6, 1, 8, 8);
        for (int s = 0; s < 2; s++)
        {
            opt.ZeroGrad();
            net.Backward(CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), [0, 1, 2, 0, 1, 2])));
            opt.Step();
        }
        return (net, opt);
    }

    private static byte[] Saved(TempDir dir, out string path)
    {
        var (net, opt) = Trained();
        path = dir.File("a.ckpt");
        Checkpoint.Capture(net, opt, epoch: 2, new Rng(5), [new EpochMetrics(1, 1.5, 0.4, double.NaN, double.NaN, 1e-2, 3.0)]).Save(path);
        return File.ReadAllBytes(path);
    }

    [Fact]
    public void RoundTripRestoresWeightsBuffersDropoutOptimizerGeneratorAndHistory()
    {
        using var dir = new TempDir();
        var (net, opt) = Trained();
        var rng = new Rng(5);
        rng.NextUInt64();
        var history = new[] { new EpochMetrics(1, 1.5, 0.4, double.NaN, double.NaN, 1e-2, 3.0), new EpochMetrics(2, 1.1, 0.6, 1.2, 0.55, 5e-3, 2.5) };
        string path = dir.File("a.ckpt");
        Checkpoint.Capture(net, opt, epoch: 2, rng, history).Save(path);
        Assert.False(File.Exists(path + ".tmp"));

        var loaded = Checkpoint.Load(path);
        Assert.Equal(2, loaded.Epoch);
        Assert.Equal(history, loaded.History);
        var net2 = SmallNet(99);
        var opt2 = new Adam(net2.Parameters, 1e-2);
        var rng2 = new Rng(0);
        Assert.NotEqual(net.ComputeHash(), net2.ComputeHash());
        loaded.Restore(net2, opt2, rng2);

        Assert.Equal(net.ComputeHash(), net2.ComputeHash());
        Assert.Equal(rng.NextUInt64(), rng2.NextUInt64());
        var dropout = net.Layers.OfType<Dropout>().Single();
        Assert.Equal(2UL, dropout.Step);
        Assert.Equal(dropout.RandomState, net2.Layers.OfType<Dropout>().Single().RandomState);
        var (s1, s2) = (opt.GetState(), opt2.GetState());
        Assert.Equal(s1.StepCount, s2.StepCount);
        Assert.Equal(s1.Tensors.Select(t => t.Name), s2.Tensors.Select(t => t.Name));
        for (int i = 0; i < s1.Tensors.Count; i++) Assert.Equal(s1.Tensors[i].Data, s2.Tensors[i].Data);
    }

    /// <summary>Every built-in layer kind, with options away from their defaults, so a spec that drops one shows.</summary>
    private static Network EveryKind(ulong seed) => new Network(
    [
        new Conv(4, new[] { 3, 2 }, new Ops.ConvolutionOptions { Padding = new[] { 1, 0 }, Stride = 1, Dilation = new[] { 1, 2 }, Groups = 1, Mode = Ops.ConvolutionMode.Convolution }, bias: false),
        new BatchNorm(epsilon: 1e-3f, momentum: 0.2f), new Activation(Ops.ActivationKind.LeakyReLU, 0.07f),
        new Lrn(new Ops.LrnOptions { Size = 3, Alpha = 2e-4f, Beta = 0.6f, K = 1.5f }),
        new Pool(new Ops.PoolingOptions { Mode = Ops.PoolingMode.AverageExcludingPadding, Window = 3, Padding = 1, Stride = new[] { 1, 2 } }),
        new Residual(6, stride: 2), Pool.Global(Ops.PoolingMode.Max), new Flatten(), new Dropout(0.25f), new Dense(5, bias: false),
    ]).Build(new Shape(2, 9, 10), seed);

    [Fact]
    public void LoadNetworkRebuildsEveryBuiltInKindFromItsSpec()
    {
        using var dir = new TempDir();
        var net = EveryKind(3);
        var x = Tensor.FromHost(TestKit.TestData.Uniform(new Random(4), 3 * 180, 1f), 3, 2, 9, 10);
        net.Forward(x, training: true); // moves the running statistics and dropout's step off their initial values
        string path = dir.File("every.ckpt");
        Checkpoint.Capture(net).Save(path);

        var loaded = Checkpoint.LoadNetwork(path);
        Assert.Equal(net.Layers.Select(l => (l.Name, l.GetType(), l.Spec!.ToString())), loaded.Layers.Select(l => (l.Name, l.GetType(), l.Spec!.ToString())));
        Assert.Equal(net.ComputeHash(), loaded.ComputeHash());
        Assert.Equal(net.Layers.OfType<Dropout>().Single().RandomState, loaded.Layers.OfType<Dropout>().Single().RandomState);
        Assert.Equal(net.Forward(x, training: false).ToHost(), loaded.Forward(x, training: false).ToHost());
        // The options survive the text form exactly (not just the hash, which a default that happens to fit would pass).
        var conv = (Conv)loaded.Layers[0];
        Assert.Equal(((Conv)net.Layers[0]).Options, conv.Options);
        Assert.Equal(((Pool)net.Layers[4]).Options, ((Pool)loaded.Layers[4]).Options);
        Assert.True(((Pool)loaded.Layers[6]).IsGlobal);
    }

    [Fact]
    public void AVersion1FileStillLoadsAndSaysItHasNoArchitecture()
    {
        using var dir = new TempDir();
        var (net, opt) = Trained();
        string path = dir.File("v1.ckpt");
        // Version 1 is version 3 without the architecture flag byte and the 16 bytes of the step fields (step 0, no
        // statistics, 0 seconds) at the end of the payload: rewrite the file so.
        var v3 = new MemoryStream();
        new Checkpoint { Epoch = 1, NetworkTensors = Checkpoint.Capture(net).NetworkTensors, RandomStates = Checkpoint.Capture(net).RandomStates, Optimizer = opt.GetState() }.Write(v3);
        var bytes = v3.ToArray();
        var payload = bytes[20..^32];
        Assert.Equal(0, payload[^17]); // no architecture
        Assert.All(payload[^16..], b => Assert.Equal(0, b));
        payload = payload[..^17];
        var v1 = new MemoryStream();
        using (var w = new BinaryWriter(v1))
        {
            w.Write("MLNCVCKP"u8);
            w.Write(1u);
            w.Write((long)payload.Length);
            w.Write(payload);
            w.Write(System.Security.Cryptography.SHA256.HashData(payload));
        }
        File.WriteAllBytes(path, v1.ToArray());

        var old = Checkpoint.Load(path);
        Assert.Null(old.Architecture);
        var net2 = SmallNet(42);
        old.Restore(net2);
        Assert.Equal(net.ComputeHash(), net2.ComputeHash());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadNetwork(path));
        Assert.Contains("no architecture", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(2000)]
    [InlineData(-1)] // the last payload byte
    public void AFlippedByteIsReportedAsCorrupted(int offset)
    {
        using var dir = new TempDir();
        var bytes = Saved(dir, out string path);
        int at = offset >= 0 ? offset : bytes.Length - 33;
        bytes[at] ^= 0x10;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("corrupted", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(12)]
    [InlineData(500)]
    [InlineData(-1)] // one byte short
    public void ATruncatedFileIsReportedAsTruncated(int keep)
    {
        using var dir = new TempDir();
        var bytes = Saved(dir, out string path);
        File.WriteAllBytes(path, bytes[..(keep >= 0 ? keep : bytes.Length - 1)]);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path));
        Assert.Contains("truncated", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void OtherFilesVersionsAndTrailingBytesAreRejected()
    {
        using var dir = new TempDir();
        var bytes = Saved(dir, out string path);

        File.WriteAllBytes(path, [.. "PK\u0003\u0004 not a checkpoint at all"u8]);
        Assert.Contains("not an MLNet.ConvNet checkpoint", Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path)).Message);

        var v4 = (byte[])bytes.Clone();
        v4[8] = 4;
        File.WriteAllBytes(path, v4);
        Assert.Contains("version 4", Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path)).Message);

        File.WriteAllBytes(path, [.. bytes, 0, 0]);
        Assert.Contains("2 unexpected bytes", Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path)).Message);

        Assert.Throws<FileNotFoundException>(() => Checkpoint.Load(dir.File("missing.ckpt")));
    }

    [Fact]
    public void RestoringIntoAnotherArchitectureNamesTheMismatch()
    {
        using var dir = new TempDir();
        Saved(dir, out string path);
        var c = Checkpoint.Load(path);
        var other = new Network(new Conv(5, 3, Conv.DefaultOptions with { Padding = 1 }), new Flatten(), new Dense(3)).Build(Sample);
        Assert.Contains("network tensors", Assert.Throws<InvalidDataException>(() => c.Restore(other)).Message);
        var wider = new Network(
        [
            new Conv(5, 3, Conv.DefaultOptions with { Padding = 1 }), new BatchNorm(), Activation.Relu(), new Pool(),
            new Flatten(), new Dense(16), Activation.Relu(), new Dropout(0.3f), new Dense(3),
        ]).Build(Sample);
        var before = wider.ComputeHash();
        var e = Assert.Throws<InvalidDataException>(() => c.Restore(wider));
        Assert.Contains("'conv1.weight' [4, 1, 3, 3]", e.Message);
        Assert.Contains("[5, 1, 3, 3]", e.Message);
        Assert.Equal(before, wider.ComputeHash()); // nothing was written
        var net = SmallNet(3);
        Assert.Contains("Adam", Assert.Throws<InvalidDataException>(() => c.Restore(net, new Sgd(net.Parameters, 0.1, 0.9))).Message);
    }
}
