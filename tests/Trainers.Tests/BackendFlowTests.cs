using System.Collections.Concurrent;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Backends;
using MLNet.ConvNet.Backends.Cpu;
using MLNet.ConvNet.Training;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>The backend a user supplies flows to every kernel call of training, evaluation and scoring.</summary>
public class BackendFlowTests
{
    private readonly MLContext _ml = new(seed: 1);

    /// <summary>The CPU backend behind a wrapper that counts every call by kernel name.</summary>
    private sealed class CountingBackend() : DelegatingBackend(new CpuBackend())
    {
        public ConcurrentDictionary<string, long> Calls { get; } = new();
        public override string Name => "counting";
        public long this[string kernel] => Calls.TryGetValue(kernel, out long n) ? n : 0;
        protected override void OnKernel(string kernel = "") => Calls.AddOrUpdate(kernel, 1, (_, n) => n + 1);
    }

    [Fact]
    public void LeNet5_trains_evaluates_and_scores_on_the_supplied_backend_and_a_step_reads_nothing_back()
    {
        var backend = new CountingBackend();
        var copiesAtReport = new List<long>();
        var o = new ConvNetTrainer.Options
        {
            Network = "lenet5", Epochs = 1, BatchSize = 25, Seed = 2, ValidationSet = FashionData.Keyed(_ml, FashionData.TestRows(50)),
            CustomBackend = backend, ProgressInterval = 4,
            OnBatch = _ => copiesAtReport.Add(backend["CopyToHost"]),
        };
        var log = new List<string>();
        o.Log = log.Add;
        var model = new ConvNetTrainer(o).Fit(Tiny.Data(_ml, 250)); // 10 steps, reports after 4, 8 and 10

        Assert.Contains(log, l => l.Contains("backend 'counting'") && l.Contains("CustomBackend"));
        // Every tensor of the trained network, and the scorer's copy, live on the supplied backend.
        Assert.Same(backend, model.Network.Backend);
        Assert.All(model.Network.Parameters, p => Assert.Same(backend, p.Value.Backend));
        Assert.All(model.Network.Buffers, b => Assert.Same(backend, b.Value.Backend));
        Assert.Same(backend, model.Scorer.Template.Backend);
        // Every kernel family of a LeNet-5 training step reached it (its ReLUs before a max pool run inside the pooling).
        foreach (var kernel in new[] { "ConvolutionForward", "ConvolutionBackwardData", "ConvolutionBackwardFilter", "PoolingReluForward", "PoolingReluBackward",
                                       "ActivationForward", "ActivationBackward", "MatMul", "AddChannelBias", "SumPerChannel",
                                       "SoftmaxCrossEntropyForward", "SoftmaxCrossEntropyBackward", "LossAndCorrect", "AdamStep", "CopyFromHost" })
            Assert.True(backend[kernel] > 0, $"{kernel} never reached the supplied backend");
        // Steps between two reports read nothing back: from one report to the next, the only CopyToHost is the report's own
        // read of the step statistics.
        Assert.Equal(3, copiesAtReport.Count);
        Assert.Equal(1, copiesAtReport[1] - copiesAtReport[0]);
        Assert.Equal(1, copiesAtReport[2] - copiesAtReport[1]);
        Assert.Equal(10, backend["LossAndCorrect"]);

        // Scoring runs there too.
        long before = backend["ConvolutionForward"];
        var scores = model.Transform(Tiny.Data(_ml, 20)).GetColumn<float[]>("Score").ToArray();
        Assert.Equal(20, scores.Length);
        Assert.True(backend["ConvolutionForward"] > before, "scoring did not run on the supplied backend");
    }
}
