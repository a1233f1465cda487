using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Ops;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>
/// Input columns every transform reads the same way (TensorColumn): missing columns, wrong types, flat vectors,
/// InputShape, a fitted transformer given another shape, bad shared options, and NaN pixels (documented: propagated).
/// Transform-specific shape errors are in each transform's test file.
/// </summary>
public class InputColumnTests
{
    private readonly MLContext _ml = new(seed: 1);

    /// <summary>Columns of several types: flat Vector&lt;Single, 64&gt;, Vector&lt;Double, 1, 8, 8&gt;, a vector of unknown size, a scalar.</summary>
    private sealed class MixedRow
    {
        public float[] Flat { get; set; } = new float[64];
        public double[] Doubles { get; set; } = new double[64];
        public float[] Varying { get; set; } = new float[64];
        public float Scalar { get; set; }
        public float[] Image { get; set; } = new float[64];
    }

    private IDataView Mixed()
    {
        var definition = SchemaDefinition.Create(typeof(MixedRow));
        definition["Flat"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 64);
        definition["Doubles"].ColumnType = new VectorDataViewType(NumberDataViewType.Double, 1, 8, 8);
        definition["Image"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 1, 8, 8);
        return _ml.Data.LoadFromEnumerable([new MixedRow(), new MixedRow()], definition);
    }

    private static Tensor Filter => Tensor.FromHost(Enumerable.Repeat(1f, 9).ToArray(), 1, 1, 3, 3);

    public static TheoryData<string, string, int[]?, string[]> BadColumns => new()
    {
        // column, transform ("conv" | "pool" | "bn" | "act"), InputShape, fragments the message must hold
        { "Missing", "conv", null, ["'Missing'", "not in the schema", "'Image'"] },
        { "Doubles", "conv", null, ["'Doubles'", "Vector<Double, 1, 8, 8>", "vector of Single"] },
        { "Varying", "pool", null, ["'Varying'", "unknown size"] },
        { "Scalar", "act", null, ["'Scalar'", "Single", "vector of Single"] },
        { "Flat", "conv", null, ["'Flat'", "Vector<Single, 64>", "flat vector", "InputShape"] },
        { "Flat", "pool", [3, 8, 8], ["'Flat'", "64 values", "[3, 8, 8]", "192"] },
        { "Flat", "conv", [1, 1, 2, 4, 8], ["[1, 1, 2, 4, 8]", "[C, X], [C, H, W] or [C, D, H, W]"] },
        { "Flat", "bn", [0, 64], ["InputShape [0, 64]", "at least 1"] },
    };

    [Theory, MemberData(nameof(BadColumns))]
    public void BadInputColumnIsNamedAtFit(string column, string transform, int[]? inputShape, string[] fragments)
    {
        IEstimator<ITransformer> estimator = transform switch
        {
            "conv" => _ml.Transforms.ApplyConvolution(new ConvolutionEstimator.Options { OutputColumnName = "Out", InputColumnName = column, InputShape = inputShape, Filter = Filter }),
            "pool" => _ml.Transforms.ApplyPooling(new PoolingEstimator.Options { OutputColumnName = "Out", InputColumnName = column, InputShape = inputShape }),
            "bn" => new Lazy(() => _ml.Transforms.ApplyBatchNormalization(new BatchNormEstimator.Options { OutputColumnName = "Out", InputColumnName = column, InputShape = inputShape })),
            _ => _ml.Transforms.ApplyActivation(new ActivationEstimator.Options { OutputColumnName = "Out", InputColumnName = column, InputShape = inputShape }),
        };
        var e = Assert.ThrowsAny<ArgumentException>(() => estimator.Fit(Mixed()));
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Theory]
    [InlineData("Missing", "not in the schema")]
    [InlineData("Doubles", "vector of Double")]
    [InlineData("Varying", "unknown size")]
    [InlineData("Scalar", "a scalar Single")]
    public void EstimatorSchemaShapeChecksTheColumnBeforeFitting(string column, string fragment)
    {
        var estimator = _ml.Transforms.ApplyPooling("Out", column);
        var e = Assert.ThrowsAny<ArgumentException>(() => estimator.GetOutputSchema(Workout.ShapeOf(Mixed().Schema)));
        Assert.Contains($"'{column}'", e.Message);
        Assert.Contains(fragment, e.Message);
        // And a pipeline fails before it fits anything.
        var chain = _ml.Transforms.CopyColumns("Copy", "Image").Append(estimator);
        Assert.ThrowsAny<ArgumentException>(() => chain.Fit(Mixed()));
    }

    [Fact]
    public void FittedTransformerRejectsAnotherRowShape()
    {
        var t = _ml.Transforms.ApplyConvolution("Conv", Filter, inputColumnName: "Features").Fit(Rows.View(_ml, Rows.Random(1, 2, 64), 1, 8, 8));
        var other = Rows.View(_ml, Rows.Random(1, 2, 36), 1, 6, 6);
        foreach (var call in new Action[] { () => t.Transform(other), () => t.GetOutputSchema(other.Schema), () => t.GetRowToRowMapper(other.Schema) })
        {
            var e = Assert.ThrowsAny<ArgumentException>(call);
            Assert.Contains("'Features'", e.Message);
            Assert.Contains("[1, 6, 6]", e.Message);
            Assert.Contains("[1, 8, 8]", e.Message);
        }
    }

    [Fact]
    public void BadSharedOptionsAreNamed()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyPooling(new PoolingEstimator.Options { OutputColumnName = "P", BatchSize = 0 }));
        Assert.Equal("BatchSize", e.ParamName);
        e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyPooling(""));
        Assert.Equal("OutputColumnName", e.ParamName);
        e = Assert.ThrowsAny<ArgumentException>(() => _ml.Transforms.ApplyPooling("P", inputColumnName: " "));
        Assert.Equal("InputColumnName", e.ParamName);
    }

    [Fact]
    public void NaNPixelsPropagateToTheOutputsThatSeeThem()
    {
        // Documented result: NaN in, NaN out. A NaN at (2, 3) of a 6x6 image reaches exactly the 3x3-convolution outputs
        // (i, j) with i in 0..2 and j in 1..3; every other output is finite and equals the engine's.
        var rows = Rows.Random(7, 3, 36);
        rows[1][2 * 6 + 3] = float.NaN;
        var data = Rows.View(_ml, rows, 1, 6, 6);
        var filter = Rows.RandomTensor(8, 1, 1, 3, 3);
        var t = _ml.Transforms.ApplyConvolution("Conv", filter, inputColumnName: "Features").Fit(data);
        var got = Rows.Read(t.Transform(data), "Conv");
        Rows.AssertSame(Rows.Engine(x => Convolution.Forward(x, filter), rows, new Shape(1, 6, 6)), got, "NaN row");
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                Assert.Equal(i <= 2 && j >= 1, float.IsNaN(got[1][i * 4 + j]));
        Assert.All(got[0].Concat(got[2]), v => Assert.True(float.IsFinite(v)));

        // The saved model (ONNX Runtime's Conv) propagates NaN the same way.
        using var loaded = Workout.SavedAndLoaded(_ml, t, data.Schema);
        var reloaded = Rows.Read(loaded.Model.Transform(data), "Conv");
        for (int k = 0; k < 16; k++) Assert.Equal(float.IsNaN(got[1][k]), float.IsNaN(reloaded[1][k]));

        // Max pooling: a window holding a NaN gives NaN (the engine's rule, as PyTorch's).
        var pool = _ml.Transforms.ApplyPooling("Pool", "Features").Fit(data);
        var pooled = Rows.Read(pool.Transform(data), "Pool");
        Assert.True(float.IsNaN(pooled[1][1 * 3 + 1]));
        Assert.Equal(1, pooled[1].Count(float.IsNaN));
        // The saved model runs ONNX Runtime's MaxPool, which does not follow that rule (it kept a NaN only when it came
        // last in its window when this was written): documented, and only windows without NaN are compared.
        using var loadedPool = Workout.SavedAndLoaded(_ml, pool, data.Schema);
        var reloadedPool = Rows.Read(loadedPool.Model.Transform(data), "Pool");
        for (int k = 0; k < 9; k++)
            if (!float.IsNaN(pooled[1][k])) Assert.Equal(pooled[1][k], reloadedPool[1][k]);
    }

    /// <summary>Defers building an estimator that would throw at construction to Fit, so one table holds both kinds.</summary>
    private sealed class Lazy(Func<IEstimator<ITransformer>> create) : IEstimator<ITransformer>
    {
        public ITransformer Fit(IDataView input) => create().Fit(input);
        public SchemaShape GetOutputSchema(SchemaShape inputSchema) => create().GetOutputSchema(inputSchema);
    }
}
