using Microsoft.ML;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>ApplyActivation: every kind, on flat and shaped rows, equal to <see cref="Activation.Forward"/> through the workout.</summary>
public class ActivationTransformTests
{
    private readonly MLContext _ml = new(seed: 1);

    public static TheoryData<ActivationKind, float?, int[]> Configurations => new()
    {
        { ActivationKind.ReLU, null, [20] },
        { ActivationKind.LeakyReLU, null, [2, 3, 4] },
        { ActivationKind.LeakyReLU, 0.2f, [2, 3, 4] },
        { ActivationKind.ELU, 0.5f, [3, 7] },
        { ActivationKind.Sigmoid, null, [2, 2, 2, 3] },
        { ActivationKind.Tanh, null, [12] },
    };

    [Theory, MemberData(nameof(Configurations))]
    public void EqualsEngine(ActivationKind kind, float? alpha, int[] rowDims)
    {
        var rowShape = new Shape(rowDims);
        var rows = Rows.Random((int)kind, 13, rowShape.Length).Select(r => r.Select(v => 4 * v).ToArray()).ToArray();
        var data = Rows.View(_ml, rows, rowDims);
        var estimator = _ml.Transforms.ApplyActivation(new ActivationEstimator.Options
        {
            OutputColumnName = "Act", InputColumnName = "Features", Kind = kind, Alpha = alpha, BatchSize = 3,
        });
        var t = Workout.Run(_ml, estimator, data, "Features", "Act", rowShape, x => Activation.Forward(kind, x, alpha));
        Assert.Equal(alpha ?? Activation.DefaultAlpha(kind), t.Alpha);
    }

    [Fact]
    public void ReluByHand()
    {
        var data = Rows.View(_ml, [[-2, -0.5f, 0, 0.5f, 3]], 5);
        var t = _ml.Transforms.ApplyActivation("Y", inputColumnName: "Features").Fit(data);
        Assert.Equal([0f, 0, 0, 0.5f, 3], Rows.Read(t.Transform(data), "Y")[0]);
    }
}
