using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace MLNet.ConvNet.Transforms.Tests.TestKit;

/// <summary>
/// The one workout every estimator goes through (after ML.NET's TestEstimatorCore): the schema shape it predicts, the
/// fitted schema's dimensions, values against the engine run directly, the row-to-row mapper, pass-through columns,
/// and Save/Load with a new MLContext.
/// </summary>
public static class Workout
{
    /// <summary>
    /// Runs the workout on <paramref name="data"/> (from <see cref="Rows.View"/>: "Features" plus a text "Id") and
    /// returns the fitted transformer. <paramref name="engine"/> is the engine call the transform must equal, applied
    /// to all rows as one batch <c>[N, inputRowShape...]</c>: the transform's batches of any size must give the same bits.
    /// </summary>
    public static TTransformer Run<TTransformer>(MLContext ml, IEstimator<TTransformer> estimator, IDataView data,
        string inputColumn, string outputColumn, Shape inputRowShape, Func<Tensor, Tensor> engine)
        where TTransformer : TensorTransformer
    {
        var predicted = estimator.GetOutputSchema(ShapeOf(data.Schema));
        var column = predicted.Single(c => c.Name == outputColumn);
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, column.Kind);
        Assert.Equal(NumberDataViewType.Single, column.ItemType);

        var transformer = estimator.Fit(data);
        Assert.Equal(inputRowShape, transformer.InputShape);
        var output = transformer.Transform(data);
        var want = Rows.Engine(engine, Rows.Read(data, inputColumn), inputRowShape);
        var type = Assert.IsType<VectorDataViewType>(output.Schema[outputColumn].Type);
        Assert.Equal(transformer.OutputShape.ToArray(), type.Dimensions.ToArray());
        Assert.Equal(want[0].Length, type.Size);
        Assert.Equal(type, transformer.GetOutputSchema(data.Schema)[outputColumn].Type);

        long calls = transformer.EngineCalls;
        Rows.AssertSame(want, Rows.Read(output, outputColumn), "Transform vs engine");
        // Rows go through the engine in mini-batches of BatchSize, the last one partial.
        Assert.Equal((want.Length + transformer.BatchSize - 1) / transformer.BatchSize, transformer.EngineCalls - calls);
        Assert.Equal(Rows.ReadText(data, "Id"), Rows.ReadText(output, "Id"));
        AssertCursorSetCoversEveryRow(output, outputColumn, want);
        calls = transformer.EngineCalls;
        Rows.AssertSame(want, MapRows(transformer, data, outputColumn), "row mapper vs engine");
        Assert.Equal(want.Length, transformer.EngineCalls - calls);

        using var loaded = SavedAndLoaded(ml, transformer, data.Schema);
        var reloaded = loaded.Model.Transform(data);
        Assert.Equal(type, reloaded.Schema[outputColumn].Type);
        Rows.AssertClose(want, Rows.Read(reloaded, outputColumn), "loaded model vs engine");
        Assert.Equal(Rows.ReadText(data, "Id"), Rows.ReadText(reloaded, "Id"));
        return transformer;
    }

    /// <summary>A parallel cursor set (as ML.NET's trainers use) gives every row once, with its own values.</summary>
    public static void AssertCursorSetCoversEveryRow(IDataView output, string outputColumn, float[][] want)
    {
        var ids = Rows.ReadText(output, "Id");
        var seen = new Dictionary<string, float[]>();
        var columns = new[] { output.Schema[outputColumn], output.Schema["Id"] };
        foreach (var cursor in output.GetRowCursorSet(columns, 3))
            using (cursor)
            {
                var values = cursor.GetGetter<VBuffer<float>>(columns[0]);
                var id = cursor.GetGetter<ReadOnlyMemory<char>>(columns[1]);
                VBuffer<float> v = default;
                ReadOnlyMemory<char> text = default;
                while (cursor.MoveNext())
                {
                    values(ref v);
                    id(ref text);
                    seen.Add(text.ToString(), v.DenseValues().ToArray());
                }
            }
        Assert.Equal(ids.Length, seen.Count);
        for (int i = 0; i < ids.Length; i++) Rows.AssertSame([want[i]], [seen[ids[i]]], $"cursor set, row {ids[i]}");
    }

    /// <summary>The output column computed one row at a time through <see cref="ITransformer.GetRowToRowMapper"/>.</summary>
    public static float[][] MapRows(ITransformer transformer, IDataView data, string outputColumn)
    {
        var mapper = transformer.GetRowToRowMapper(data.Schema);
        var column = mapper.OutputSchema[outputColumn];
        var result = new List<float[]>();
        using var cursor = data.GetRowCursor(mapper.GetDependencies([column]));
        using var row = mapper.GetRow(cursor, [column]);
        var getter = row.GetGetter<VBuffer<float>>(column);
        VBuffer<float> value = default;
        while (cursor.MoveNext())
        {
            getter(ref value);
            result.Add(value.DenseValues().ToArray());
        }
        return result.ToArray();
    }

    /// <summary>A model saved with <see cref="ModelOperationsCatalog.Save(ITransformer, DataViewSchema, string)"/> and loaded by a new MLContext.</summary>
    public static Loaded SavedAndLoaded(MLContext ml, ITransformer model, DataViewSchema schema)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mlnet-convnet-{Guid.NewGuid():N}.zip");
        ml.Model.Save(model, schema, path);
        var loaded = new MLContext(seed: 1).Model.Load(path, out var loadedSchema);
        return new Loaded(loaded, loadedSchema, path);
    }

    /// <summary>A loaded model and its file (deleted on dispose).</summary>
    public sealed record Loaded(ITransformer Model, DataViewSchema InputSchema, string Path) : IDisposable
    {
        public void Dispose()
        {
            (Model as IDisposable)?.Dispose();
            File.Delete(Path);
        }
    }

    /// <summary>The schema shape of a schema (ML.NET's SchemaShape.Create is internal; tests may call it).</summary>
    public static SchemaShape ShapeOf(DataViewSchema schema) =>
        (SchemaShape)typeof(SchemaShape).GetMethod("Create", BindingFlags.NonPublic | BindingFlags.Static, [typeof(DataViewSchema)])!
            .Invoke(null, [schema])!;
}
