using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>In-memory rows with a shaped vector column, reading columns back, and the engine run directly on rows.</summary>
public static class Rows
{
    /// <summary>A row: a float vector (its dimensions set by the schema definition) and an id that passes through.</summary>
    public sealed class VectorRow
    {
        public float[] Features { get; set; } = [];
        public string Id { get; set; } = "";
    }

    /// <summary>A view of <paramref name="rows"/> whose "Features" column is <c>Vector&lt;Single, dims...&gt;</c>, plus a text "Id".</summary>
    public static IDataView View(MLContext ml, float[][] rows, params int[] dims)
    {
        var definition = SchemaDefinition.Create(typeof(VectorRow));
        definition["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, dims);
        return ml.Data.LoadFromEnumerable(rows.Select((r, i) => new VectorRow { Features = r, Id = $"row{i}" }), definition);
    }

    /// <summary><paramref name="n"/> rows of <paramref name="size"/> values uniform in [-1, 1), from a seeded generator.</summary>
    public static float[][] Random(int seed, int n, int size)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, size).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()).ToArray();
    }

    /// <summary>A tensor of <paramref name="dims"/> filled from a seeded generator, uniform in [-1, 1).</summary>
    public static Tensor RandomTensor(int seed, params int[] dims)
    {
        var shape = new Shape(dims);
        var rng = new Random(seed);
        return Tensor.FromHost(Enumerable.Range(0, shape.Length).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), shape);
    }

    /// <summary>Every value of vector column <paramref name="column"/>, row by row (dense).</summary>
    public static float[][] Read(IDataView view, string column)
    {
        var col = view.Schema[column];
        var result = new List<float[]>();
        using var cursor = view.GetRowCursor([col]);
        var getter = cursor.GetGetter<VBuffer<float>>(col);
        VBuffer<float> value = default;
        while (cursor.MoveNext())
        {
            getter(ref value);
            var row = new float[value.Length];
            value.CopyTo(row);
            result.Add(row);
        }
        return result.ToArray();
    }

    /// <summary>The text column <paramref name="column"/>, row by row.</summary>
    public static string[] ReadText(IDataView view, string column) =>
        view.GetColumn<ReadOnlyMemory<char>>(column).Select(m => m.ToString()).ToArray();

    /// <summary>Runs <paramref name="op"/> on all rows stacked as one batch <c>[N, rowShape...]</c>; returns the output rows.</summary>
    public static float[][] Engine(Func<Tensor, Tensor> op, float[][] rows, Shape rowShape)
    {
        var x = Tensor.FromHost(rows.SelectMany(r => r).ToArray(), new Shape([rows.Length, .. rowShape.AsSpan()]));
        var y = op(x).ToHost();
        int size = y.Length / rows.Length;
        return Enumerable.Range(0, rows.Length).Select(i => y.AsSpan(i * size, size).ToArray()).ToArray();
    }

    /// <summary>Asserts bit-identical rows (NaN equals NaN), naming the first difference.</summary>
    public static void AssertSame(float[][] want, float[][] got, string what)
    {
        Assert.True(want.Length == got.Length, $"{what}: {got.Length} rows, expected {want.Length}");
        for (int r = 0; r < want.Length; r++)
        {
            Assert.True(want[r].Length == got[r].Length, $"{what}: row {r} has {got[r].Length} values, expected {want[r].Length}");
            for (int i = 0; i < want[r].Length; i++)
                if (BitConverter.SingleToInt32Bits(want[r][i]) != BitConverter.SingleToInt32Bits(got[r][i]))
                    Assert.Fail($"{what}: row {r} value {i} is {got[r][i]:R}, expected {want[r][i]:R}");
        }
    }

    /// <summary>
    /// Asserts |got - want| &lt;= relTol * max|want of the row| per value: the engine and ONNX Runtime sum in different
    /// orders, so float32 results differ by a few ulps of the row's largest partial sums (~1e-7 relative for these sizes);
    /// 1e-5 leaves a wide margin while any indexing error (an O(1) change) fails.
    /// </summary>
    public static void AssertClose(float[][] want, float[][] got, string what, double relTol = 1e-5)
    {
        Assert.True(want.Length == got.Length, $"{what}: {got.Length} rows, expected {want.Length}");
        for (int r = 0; r < want.Length; r++)
        {
            Assert.True(want[r].Length == got[r].Length, $"{what}: row {r} has {got[r].Length} values, expected {want[r].Length}");
            double scale = want[r].Max(v => Math.Abs((double)v));
            double tol = relTol * scale;
            for (int i = 0; i < want[r].Length; i++)
            {
                double err = Math.Abs(got[r][i] - (double)want[r][i]);
                if (!(err <= tol))
                    Assert.Fail($"{what}: row {r} value {i} is {got[r][i]:R}, expected {want[r][i]:R} (error {err:g3} > {tol:g3})");
            }
        }
    }
}
