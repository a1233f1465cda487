using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Ops;

namespace MLNet.ConvNet.Layers;

/// <summary>
/// Ready-made networks. Input channels and sizes are inferred at <see cref="Network.Build"/>, so each preset takes
/// any sample shape its pooling allows (LeNet-5 and cnn2bn are defined for 1x28x28, as in the TorchSharp peer
/// benchmark: ../shared/bench/torchsharp-fashion/README.md).
/// </summary>
public static class Presets
{
    /// <summary>The names <see cref="ByName"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["lenet5", "cnn2bn", "vgg", "resnet"];

    /// <summary>The preset called <paramref name="name"/> (one of <see cref="Names"/>, case-insensitive).</summary>
    public static Network ByName(string name, int classes = 10, IBackend? backend = null) => name.ToLowerInvariant() switch
    {
        "lenet5" => LeNet5(classes, backend),
        "cnn2bn" => Cnn2Bn(classes, backend),
        "vgg" => SmallVgg(classes, backend),
        "resnet" => SmallResNet(classes, backend),
        _ => throw new ArgumentException($"Unknown network '{name}'; choose one of {string.Join(", ", Names)}.", nameof(name)),
    };

    /// <summary>
    /// LeNet-5 as in the peer benchmark (61,706 parameters on 1x28x28, 10 classes):
    /// conv5x5 6 pad 2, relu, maxpool2; conv5x5 16, relu, maxpool2; dense 120 relu, 84 relu, classes.
    /// </summary>
    public static Network LeNet5(int classes = 10, IBackend? backend = null) => new(
    [
        new Conv(6, 5, Conv.DefaultOptions with { Padding = 2 }), Activation.Relu(), new Pool(),
        new Conv(16, 5), Activation.Relu(), new Pool(),
        new Flatten(),
        new Dense(120), Activation.Relu(),
        new Dense(84), Activation.Relu(),
        new Dense(classes),
    ], backend);

    /// <summary>
    /// cnn2bn as in the peer benchmark (421,834 parameters on 1x28x28, 10 classes):
    /// conv3x3 32 pad 1, BN, relu, maxpool2; conv3x3 64 pad 1, BN, relu, maxpool2; dense 128 relu, dropout 0.25, classes.
    /// The convolutions keep their bias, as the reference does.
    /// </summary>
    public static Network Cnn2Bn(int classes = 10, IBackend? backend = null) => new(
    [
        new Conv(32, 3, Conv.DefaultOptions with { Padding = 1 }), new BatchNorm(), Activation.Relu(), new Pool(),
        new Conv(64, 3, Conv.DefaultOptions with { Padding = 1 }), new BatchNorm(), Activation.Relu(), new Pool(),
        new Flatten(),
        new Dense(128), Activation.Relu(), new Dropout(0.25f),
        new Dense(classes),
    ], backend);

    /// <summary>
    /// A small VGG-style network: two blocks of two conv3x3 (32 then 64 channels, pad 1, no bias) + BN + relu, each
    /// ending in maxpool2; dense 128 + BN + relu, dropout 0.3, classes. Needs spatial sizes of at least 4.
    /// </summary>
    public static Network SmallVgg(int classes = 10, IBackend? backend = null)
    {
        var layers = new List<Layer>();
        foreach (int width in (int[])[32, 64])
        {
            for (int i = 0; i < 2; i++)
                layers.AddRange([new Conv(width, 3, Conv.DefaultOptions with { Padding = 1 }, bias: false), new BatchNorm(), Activation.Relu()]);
            layers.Add(new Pool());
        }
        layers.AddRange([new Flatten(), new Dense(128, bias: false), new BatchNorm(), Activation.Relu(), new Dropout(0.3f), new Dense(classes)]);
        return new Network(layers, backend);
    }

    /// <summary>
    /// A small ResNet: conv3x3 16 (no bias) + BN + relu; residual blocks 16, 32 (stride 2), 64 (stride 2);
    /// global average pooling; dense classes. Any spatial size works (stride-2 blocks round up).
    /// </summary>
    public static Network SmallResNet(int classes = 10, IBackend? backend = null) => new(
    [
        new Conv(16, 3, Conv.DefaultOptions with { Padding = 1 }, bias: false), new BatchNorm(), Activation.Relu(),
        new Residual(16), new Residual(32, stride: 2), new Residual(64, stride: 2),
        Pool.Global(PoolingMode.AverageIncludingPadding), new Flatten(),
        new Dense(classes),
    ], backend);
}
