using Xunit;

namespace MLNet.ConvNet.Distributed.Tests;

/// <summary>
/// Data-parallel training across processes: each test starts the worker under <c>mpirun.mpich -n 2</c> (and alone, as
/// the one-process reference); every process it starts ends within a time limit.
/// </summary>
public sealed class DataParallelTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);
    private readonly string _dir = Mpi.TempDirectory();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TwoRanksWithTheSameGlobalBatchGiveTheWeightsOfOneRank()
    {
        Assert.SkipWhen(Mpi.SkipReason is not null, Mpi.SkipReason ?? "");
        // 320 rows in global batches of 16: 20 SGD steps of LeNet-5 (no batch norm). SGD, not Adam: Adam's update barely
        // changes when every gradient is scaled, so it would hide a wrong average over the ranks.
        const string job = "--rows 320 --batch 16 --epochs 1 --net lenet5 --optimizer sgd --lr 0.05";
        var one = Mpi.Run(0, $"{job} --out {_dir}/one.bin --init-out {_dir}/init.bin", Limit);
        Assert.True(one.ExitCode == 0, one.ToString());
        var two = Mpi.Run(2, $"{job} --out {_dir}/two.bin", Limit);
        Assert.True(two.ExitCode == 0, two.ToString());
        Assert.Contains("2 ranks", two.Output);

        float[] a = Mpi.ReadWeights($"{_dir}/one.bin"), b = Mpi.ReadWeights($"{_dir}/two.bin");
        Assert.Equal(61706, a.Length);
        Assert.Equal(a.Length, b.Length);
        // The ranks sum two half-batch means where one process sums the whole batch: only float rounding differs
        // (measured: 1.5e-7 at most on weights of magnitude up to 1.1). 1e-5 of the largest weight.
        double scale = a.Max(Math.Abs), worst = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(worst <= 1e-5 * scale, $"largest difference {worst:G3} (weights up to {scale:G3})\n{two}");
        // Training moved the weights far more than that: the comparison is not between two untrained networks.
        double moved = a.Zip(Mpi.ReadWeights($"{_dir}/init.bin"), (x, y) => Math.Abs(x - y)).Max();
        Assert.True(moved > 100 * 1e-5 * scale, $"20 steps moved the weights by {moved:G3} only");
    }

    [Theory]
    [InlineData("throw", "injected failure at step 5 on rank 1")]
    [InlineData("kill", "BAD TERMINATION")]
    public void ARankFailingMidEpochEndsTheJobWithAnErrorWithin30Seconds(string mode, string expected)
    {
        Assert.SkipWhen(Mpi.SkipReason is not null, Mpi.SkipReason ?? "");
        // 50 steps: rank 1 fails at its 5th, while rank 0 waits for it in the step's allreduce.
        var run = Mpi.Run(2, "--rows 800 --batch 16 --epochs 1 --fail-rank 1 --fail-step 5 --fail-mode " + mode, TimeSpan.FromSeconds(60));
        Assert.True(run.ExitCode is not null and not 0, run.ToString());
        Assert.True(run.Elapsed < TimeSpan.FromSeconds(30), run.ToString());
        Assert.Contains(expected, run.Output);
        Assert.DoesNotContain("RESULT", run.Output); // rank 0 did not finish training
    }

    [Fact]
    public void AJobResumedFromRankZerosCheckpointMatchesAnUninterruptedRun()
    {
        Assert.SkipWhen(Mpi.SkipReason is not null, Mpi.SkipReason ?? "");
        // Two epochs of 20 steps; the interrupted job loses rank 1 at step 30 (epoch 2), after rank 0 saved epoch 1.
        const string job = "--rows 320 --batch 16 --epochs 2 --net lenet5";
        var whole = Mpi.Run(2, $"{job} --checkpoint {_dir}/whole --out {_dir}/whole.bin", Limit);
        Assert.True(whole.ExitCode == 0, whole.ToString());

        var broken = Mpi.Run(2, $"{job} --checkpoint {_dir}/resumed --fail-rank 1 --fail-step 30 --fail-mode throw", Limit);
        Assert.True(broken.ExitCode is not null and not 0, broken.ToString());
        Assert.Contains("epoch 1:", broken.Output);
        Assert.DoesNotContain("epoch 2:", broken.Output);
        Assert.True(File.Exists($"{_dir}/resumed/convnet.ckpt"), broken.ToString());

        var resumed = Mpi.Run(2, $"{job} --checkpoint {_dir}/resumed --resume --out {_dir}/resumed.bin", Limit);
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.DoesNotContain("epoch 1:", resumed.Output); // epoch 1 came from the checkpoint
        Assert.Contains("epoch 2:", resumed.Output);
        // Same ranks, same order of float operations: the resumed weights are bit-identical.
        Assert.Equal(Mpi.ReadWeights($"{_dir}/whole.bin"), Mpi.ReadWeights($"{_dir}/resumed.bin"));
    }
}
