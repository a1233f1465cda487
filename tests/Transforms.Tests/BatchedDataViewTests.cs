using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ConvNet.Transforms.Batching;
using MLNet.ConvNet.Transforms.Tests.TestKit;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests;

/// <summary>The shared batched view and row mapper with a function of our own: two computed columns and a pass-through.</summary>
public class BatchedDataViewTests
{
    private readonly MLContext _ml = new(seed: 1);

    /// <summary>Computed column 0: the row's sum; 1: the row doubled. Records every call's row count.</summary>
    private sealed class SumAndTwice(int length, int batchSize) : BatchFunction(length, batchSize)
    {
        public List<int> Calls { get; } = [];

        public override BatchOutputs CreateOutputs(int capacity) => new Outputs(this, capacity);

        private sealed class Outputs(SumAndTwice parent, int capacity) : BatchOutputs
        {
            private readonly float[] _sum = new float[capacity];
            private readonly float[] _twice = new float[capacity * parent.InputLength];

            public override void Compute(float[] input, int count)
            {
                lock (parent.Calls) parent.Calls.Add(count);
                int n = parent.InputLength;
                for (int r = 0; r < count; r++)
                {
                    float s = 0;
                    for (int i = 0; i < n; i++) { s += input[r * n + i]; _twice[r * n + i] = 2 * input[r * n + i]; }
                    _sum[r] = s;
                }
            }

            public override Delegate Getter(int computed, Func<int> slot) => computed == 0
                ? (ValueGetter<float>)((ref float dst) => dst = _sum[slot()])
                : (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
                {
                    int n = parent.InputLength;
                    dst = new VBuffer<float>(n, _twice.AsSpan(slot() * n, n).ToArray());
                });
        }
    }

    /// <summary>Output: Id (passed through), Sum, Twice.</summary>
    private static BatchedColumns Columns(DataViewSchema input, int length)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumn("Id", input["Id"].Type);
        builder.AddColumn("Sum", NumberDataViewType.Single);
        builder.AddColumn("Twice", new VectorDataViewType(NumberDataViewType.Single, length));
        return new BatchedColumns(input, builder.ToSchema(), [input["Id"].Index, BatchedColumns.Computed(0), BatchedColumns.Computed(1)], input["Features"].Index);
    }

    [Fact]
    public void A_cursor_computes_rows_in_batches_and_serves_each_row_its_own_values()
    {
        var rows = Rows.Random(3, 10, 4);
        var input = Rows.View(_ml, rows, 4);
        var function = new SumAndTwice(4, batchSize: 4);
        var view = new BatchedDataView(function, input, Columns(input.Schema, 4));

        var twice = Rows.Read(view, "Twice");
        var sums = view.GetColumn<float>("Sum").ToArray();
        var ids = Rows.ReadText(view, "Id");

        Assert.Equal([4, 4, 2, 4, 4, 2], function.Calls); // two cursors, each 10 rows in batches of at most 4
        for (int r = 0; r < rows.Length; r++)
        {
            Assert.Equal(rows[r].Select(v => 2 * v), twice[r]);
            Assert.Equal(rows[r].Aggregate(0f, (s, v) => s + v), sums[r]);
            Assert.Equal($"row{r}", ids[r]);
        }
    }

    [Fact]
    public void A_cursor_without_computed_columns_never_calls_the_function()
    {
        var input = Rows.View(_ml, Rows.Random(4, 5, 2), 2);
        var function = new SumAndTwice(2, batchSize: 2);
        var view = new BatchedDataView(function, input, Columns(input.Schema, 2));
        Assert.Equal(["row0", "row1", "row2", "row3", "row4"], Rows.ReadText(view, "Id"));
        Assert.Empty(function.Calls);
        using var cursor = view.GetRowCursor([view.Schema["Id"]]);
        Assert.False(cursor.IsColumnActive(view.Schema["Sum"]));
        Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<float>(view.Schema["Sum"]));
    }

    [Fact]
    public void The_row_mapper_computes_one_row_once_per_input_row()
    {
        var rows = Rows.Random(5, 3, 3);
        var input = Rows.View(_ml, rows, 3);
        var function = new SumAndTwice(3, batchSize: 8);
        var mapper = new BatchedRowMapper(function, Columns(input.Schema, 3));
        var sum = mapper.OutputSchema["Sum"];
        Assert.Equal(["Features"], mapper.GetDependencies([sum]).Select(c => c.Name));

        using var cursor = input.GetRowCursor(input.Schema);
        var row = mapper.GetRow(cursor, [sum, mapper.OutputSchema["Twice"]]);
        var getSum = row.GetGetter<float>(sum);
        var getTwice = row.GetGetter<VBuffer<float>>(mapper.OutputSchema["Twice"]);
        float s = 0;
        VBuffer<float> t = default;
        for (int r = 0; cursor.MoveNext(); r++)
        {
            getSum(ref s);
            getTwice(ref t);
            Assert.Equal(rows[r].Aggregate(0f, (a, v) => a + v), s);
            Assert.Equal(rows[r].Select(v => 2 * v), t.DenseValues());
        }
        Assert.Equal([1, 1, 1], function.Calls);
    }

    [Fact]
    public void Columns_that_cannot_pass_through_are_refused()
    {
        var input = Rows.View(_ml, Rows.Random(1, 1, 2), 2);
        var builder = new DataViewSchema.Builder();
        builder.AddColumn("Id", NumberDataViewType.Single); // Id is text in the input
        var e = Assert.Throws<ArgumentException>(() => new BatchedColumns(input.Schema, builder.ToSchema(), [input.Schema["Id"].Index], input.Schema["Features"].Index));
        Assert.Contains("'Id'", e.Message);
    }
}
