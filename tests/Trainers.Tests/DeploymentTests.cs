using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>A small model trained once and saved as model.zip, for the deployment tests.</summary>
public sealed class SavedModel : IDisposable
{
    public SavedModel()
    {
        var data = Tiny.Data(Ml, 500);
        Fitted = Ml.MulticlassClassification.Trainers.ConvNet(Tiny.Options())
            .Append(Ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"))
            .Fit(data);
        Ml.Model.Save(Fitted, data.Schema, Path);
    }

    public MLContext Ml { get; } = new(seed: 1);
    public TransformerChain<Microsoft.ML.Transforms.KeyToValueMappingTransformer> Fitted { get; }
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"convnet-deploy-{Guid.NewGuid():N}.zip");
    public ImageRow[] Rows { get; } = FashionData.TestRows(200);

    public void Dispose() => File.Delete(Path);
}

public sealed class ClassPrediction
{
    public float[] Score { get; set; } = [];
    public string PredictedClass { get; set; } = "";
}

/// <summary>Serving a saved model: loading safely, PredictionEngine disposal, many threads, damaged files.</summary>
public sealed class DeploymentTests(SavedModel saved) : IClassFixture<SavedModel>
{
    private static float[][] Scores(ITransformer model, MLContext ml, ImageRow[] rows) =>
        model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToArray();

    [Fact]
    public void A_loaded_model_keeps_working_after_PredictionEngines_over_it_are_disposed()
    {
        // The web-app pattern of issue 11: load once, then `using var engine` per request.
        var ml = new MLContext(seed: 2);
        var loaded = ConvNetModel.Load(ml, saved.Path, out var schema);
        Assert.NotNull(schema.GetColumnOrNull("Features"));
        var before = Scores(loaded, ml, saved.Rows);
        for (int request = 0; request < 3; request++)
        {
            using var engine = ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(loaded);
            Assert.Equal(before[request], engine.Predict(saved.Rows[request]).Score);
        }
        Assert.Equal(before, Scores(loaded, ml, saved.Rows)); // Transform after the engines are gone
        using var last = ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(loaded);
        Assert.Equal(before[7], last.Predict(saved.Rows[7]).Score);
    }

    [Fact]
    public void The_loaded_model_scores_as_MLNets_own_Load_does()
    {
        var ml = new MLContext(seed: 2);
        var ours = ConvNetModel.Load(ml, saved.Path, out _);
        var theirs = ml.Model.Load(saved.Path, out _);
        Assert.Equal(Scores(theirs, ml, saved.Rows), Scores(ours, ml, saved.Rows));
        Assert.Equal(theirs.Transform(ml.Data.LoadFromEnumerable(saved.Rows)).GetColumn<string>("PredictedClass"),
            ours.Transform(ml.Data.LoadFromEnumerable(saved.Rows)).GetColumn<string>("PredictedClass"));
    }

    /// <summary>
    /// What ML.NET alone does (dotnet/machinelearning#5945), pinned so we learn when it changes: a disposed engine
    /// disposes the model Model.Load returned, unless the engine was made with OwnsTransformer = false (the
    /// workaround docs/deployment.md gives applications that load without this library).
    /// </summary>
    [Fact]
    public void MLNets_own_Load_breaks_after_a_disposed_engine_unless_OwnsTransformer_is_false()
    {
        var ml = new MLContext(seed: 2);
        var plain = ml.Model.Load(saved.Path, out _);
        using (var engine = ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(plain)) engine.Predict(saved.Rows[0]);
        Assert.ThrowsAny<Exception>(() => Scores(plain, ml, saved.Rows));

        var kept = ml.Model.Load(saved.Path, out _);
        var before = Scores(kept, ml, saved.Rows);
        using (var engine = ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(kept, new PredictionEngineOptions { OwnsTransformer = false }))
            engine.Predict(saved.Rows[0]);
        Assert.Equal(before, Scores(kept, ml, saved.Rows));
    }

    [Fact]
    public void The_fitted_pipeline_keeps_working_after_a_disposed_engine()
    {
        var before = Scores(saved.Fitted, saved.Ml, saved.Rows);
        using (var engine = saved.Ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(saved.Fitted)) engine.Predict(saved.Rows[0]);
        Assert.Equal(before, Scores(saved.Fitted, saved.Ml, saved.Rows));
    }

    [Fact]
    public void The_fitted_models_onnx_twin_survives_a_disposed_engine_and_the_model_still_saves()
    {
        // ToMLNetTransformer gives the ML.NET pipeline that Save writes; an engine over it must not dispose it either.
        var convnet = saved.Fitted.OfType<ConvNetTransformer>().Single();
        var twin = convnet.ToMLNetTransformer();
        var before = Scores(twin, saved.Ml, saved.Rows);
        using (var engine = saved.Ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(twin)) engine.Predict(saved.Rows[0]);
        Assert.Equal(before, Scores(twin, saved.Ml, saved.Rows));
        var stream = new MemoryStream();
        saved.Ml.Model.Save(saved.Fitted, saved.Ml.Data.LoadFromEnumerable(saved.Rows).Schema, stream);
        stream.Position = 0;
        Assert.Equal(before, Scores(ConvNetModel.Load(new MLContext(), stream, out _), saved.Ml, saved.Rows));
    }

    [Fact]
    public void ThreadSafePredictor_from_many_threads_gives_the_single_threaded_outputs()
    {
        var ml = new MLContext(seed: 2);
        var loaded = ConvNetModel.Load(ml, saved.Path, out _);
        foreach (var model in new ITransformer[] { loaded, saved.Fitted })
        {
            // Single-threaded reference: one engine, rows in order.
            ClassPrediction[] expected;
            using (var engine = ml.Model.CreatePredictionEngine<ImageRow, ClassPrediction>(model))
                expected = saved.Rows.Select(engine.Predict).ToArray();

            // Eight threads, each row asked for three times in a shuffled order.
            var order = Enumerable.Range(0, 3 * saved.Rows.Length).Select(i => i % saved.Rows.Length).ToArray();
            new Random(5).Shuffle(order);
            var got = new ClassPrediction[order.Length];
            using (var predictor = new ThreadSafePredictor<ImageRow, ClassPrediction>(ml, model))
            {
                Parallel.For(0, order.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => got[i] = predictor.Predict(saved.Rows[order[i]]));
                Assert.InRange(predictor.EngineCount, 1, 8); // at most one engine per call running at once
            }
            for (int i = 0; i < order.Length; i++)
            {
                Assert.Equal(expected[order[i]].Score, got[i].Score);
                Assert.Equal(expected[order[i]].PredictedClass, got[i].PredictedClass);
            }
            // Disposing the predictor left the model working.
            Assert.Equal(expected[0].Score, Scores(model, ml, saved.Rows[..1])[0]);
        }
    }

    [Fact]
    public void Unload_frees_the_model_and_later_use_names_it()
    {
        var ml = new MLContext(seed: 2);
        var loaded = ConvNetModel.Load(ml, saved.Path, out _);
        using var predictor = loaded.CreatePredictor<ImageRow, ClassPrediction>();
        Assert.Equal(10, predictor.Predict(saved.Rows[0]).Score.Length);
        loaded.Unload();
        var e = Assert.Throws<ObjectDisposedException>(() => loaded.Transform(ml.Data.LoadFromEnumerable(saved.Rows)));
        Assert.Contains(saved.Path, e.Message);
        Assert.Contains("Unload", e.Message);
    }

    [Theory]
    [InlineData("corrupted")]
    [InlineData("truncated")]
    [InlineData("not a zip")]
    [InlineData("empty")]
    public void A_damaged_model_file_is_reported_at_the_top_naming_the_file(string damage)
    {
        string path = System.IO.Path.Combine(Path.GetTempPath(), $"convnet-damaged-{Guid.NewGuid():N}.zip");
        try
        {
            var bytes = File.ReadAllBytes(saved.Path);
            bytes = damage switch
            {
                "corrupted" => Corrupt(bytes),
                "truncated" => bytes[..(bytes.Length / 2)],
                "not a zip" => "this is not a model"u8.ToArray(),
                _ => [],
            };
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<InvalidDataException>(() => ConvNetModel.Load(new MLContext(), path, out _));
            Assert.Contains(path, e.Message);
            Assert.Contains("not a model ML.NET can load", e.Message);
            Assert.Contains("Cause:", e.Message);
        }
        finally { File.Delete(path); }
    }

    /// <summary>Zeroes 256 bytes a third of the way into the file (inside the stored data; the zip's directory at the end stays readable).</summary>
    private static byte[] Corrupt(byte[] bytes)
    {
        var copy = (byte[])bytes.Clone();
        Array.Clear(copy, copy.Length / 3, 256);
        return copy;
    }

    [Fact]
    public void A_missing_model_file_is_named()
    {
        string path = System.IO.Path.Combine(Path.GetTempPath(), $"convnet-missing-{Guid.NewGuid():N}.zip");
        var e = Assert.Throws<FileNotFoundException>(() => ConvNetModel.Load(new MLContext(), path, out _));
        Assert.Contains(path, e.Message);
    }
}
