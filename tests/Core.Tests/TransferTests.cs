using MLNet.ConvNet.Layers;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Optimizers;
using MLNet.ConvNet.Tests.TestKit;
using Xunit;
using Activation = MLNet.ConvNet.Layers.Activation;
using BatchNorm = MLNet.ConvNet.Layers.BatchNorm;
using Dense = MLNet.ConvNet.Layers.Dense;

namespace MLNet.ConvNet.Tests;

/// <summary>Network.FrozenLayerCount, Optimizer.SetLearningRateScale and Transfer.Copy.</summary>
public class TransferTests
{
    private static Network Net(ulong seed) => new Network(
        [new Conv(4, 3) { Name = "c1" }, new BatchNorm { Name = "bn" }, Activation.Relu(), new Flatten(), new Dense(6) { Name = "d1" }, new Dense(3) { Name = "fc" }])
        .Build(new Shape(2, 6, 6), seed);

    private static (Tensor X, int[] Labels) Batch(int seed)
    {
        var x = Tensor.FromHost(TestData.Uniform(new Random(seed), 8 * 72, 1f), new Shape(8, 2, 6, 6));
        return (x, [0, 1, 2, 0, 1, 2, 0, 1]);
    }

    private static void Step(Network net, Optimizer opt, Tensor x, int[] labels)
    {
        opt.ZeroGrad();
        net.BackwardParameters(CrossEntropy.Backward(CrossEntropy.Forward(net.Forward(x, training: true), labels)));
        opt.Step();
    }

    [Fact]
    public void FrozenLayersKeepTheirWeightsAndStatisticsBitForBit()
    {
        var net = Net(1);
        net.FrozenLayerCount = 3;   // c1, bn, relu
        Assert.Equal(["d1.weight", "d1.bias", "fc.weight", "fc.bias"], net.TrainableParameters.Select(p => p.Name));
        var before = net.StateTensors().ToDictionary(t => t.Name, t => t.Value.ToHost());
        var opt = new Adam(net.TrainableParameters, 0.01);
        var (x, labels) = Batch(2);
        for (int i = 0; i < 3; i++) Step(net, opt, x, labels);
        foreach (var (name, value) in net.StateTensors())
        {
            if (name.StartsWith("c1.") || name.StartsWith("bn.")) Assert.Equal(before[name], value.ToHost());   // running stats too
            else Assert.NotEqual(before[name], value.ToHost());
        }
        Assert.Throws<InvalidOperationException>(() => net.Backward(Tensor.FromHost(new float[24], 8, 3)));
    }

    [Fact]
    public void ALearningRateScaleIsTheSameAsASmallerRate()
    {
        // SGD with the body at scale 0.25 of rate 0.1 equals, for the body, SGD at rate 0.025 on an identical network.
        var a = Net(3); var b = Net(3);
        var body = a.Parameters.Where(p => !p.Name.StartsWith("fc.")).ToArray();
        var optA = new Sgd(a.Parameters, 0.1, momentum: 0.9);
        optA.SetLearningRateScale(body, 0.25);
        var optB = new Sgd(b.Parameters, 0.025, momentum: 0.9);
        var (x, labels) = Batch(4);
        Step(a, optA, x, labels);
        Step(b, optB, x, labels);
        foreach (var (p, q) in a.Parameters.Zip(b.Parameters).Where(t => !t.First.Name.StartsWith("fc.")))
            Assert.Equal(q.Value.ToHost(), p.Value.ToHost());
        Assert.NotEqual(b.Parameters[^1].Value.ToHost(), a.Parameters[^1].Value.ToHost());   // the head kept rate 0.1
    }

    [Fact]
    public void CopyWithANewHeadKeepsTheBodyAndComputesTheSameFeatures()
    {
        // Dotted names, as ONNX nodes have ("/layer1/layer1.0"), and a Graph block.
        var source = new Network(
        [
            new Conv(4, 3) { Name = "/c.1" }, new BatchNorm { Name = "bn.x" },
            new Graph([GraphNode.Of(new Conv(4, 1) { Name = "in.ner" }, Graph.InputName), GraphNode.Add("add", Graph.InputName, "in.ner")]) { Name = "/g.0" },
            Activation.Relu(), new Flatten(), new Dense(3) { Name = "fc" },
        ]).Build(new Shape(2, 6, 6), 5);
        var bn = (BatchNorm)source.Layers[1];
        bn.RunningMean!.CopyFromHost([0.1f, -0.2f, 0.3f, 0f]);   // not the fresh values, so a copy that missed them shows
        var (xb, lb) = Batch(7);
        Step(source, new Adam(source.Parameters, 0.01), xb, lb);
        var copy = Transfer.Copy(source, source.Backend, new Shape(2, 6, 6), seed: 9, classes: 7);
        Assert.Equal(new Shape(7), copy.OutputShape);
        Assert.Equal(Transfer.HeadName, copy.Layers[^1].Name);
        var x = Batch(6).X;
        // Everything up to the head gives the same values.
        Tensor Body(Network n) { var h = x; foreach (var l in n.Layers.Take(n.Layers.Count - 1)) h = l.Forward(h, false); return h; }
        Assert.Equal(Body(source).ToHost(), Body(copy).ToHost());
        Assert.Equal(4, Transfer.CountThrough(copy, "relu1"));
        Assert.Equal(copy.Layers.Count - 1, Transfer.CountThrough(copy, "body"));
        Assert.Contains("no top-level layer named 'x'", Assert.Throws<ArgumentException>(() => Transfer.CountThrough(copy, "x")).Message);
    }
}
