using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.ConvNet.Layers;
using ActivationKind = MLNet.ConvNet.Ops.ActivationKind;
using PoolingMode = MLNet.ConvNet.Ops.PoolingMode;
using PoolingOptions = MLNet.ConvNet.Ops.PoolingOptions;
using Softmax = MLNet.ConvNet.Ops.Softmax;
using Xunit;

namespace MLNet.ConvNet.Trainers.Tests;

/// <summary>
/// A small network with every inference-relevant layer kind of the presets (conv, batch norm, relu, pool, dropout,
/// dense) trained for 1 epoch on 300 images, and 257 test rows: one more than the scorer's batch of 256.
/// </summary>
public sealed class ScoredModel
{
    public const int TestCount = NetworkScorer.DefaultBatchSize + 1;

    public ScoredModel()
    {
        var options = Tiny.Options(epochs: 1, seed: 4);
        // 16 x 9 x 784 + 3,136 x 10 = 144k multiply-adds per image: a cursor's 256 rows are above SmallCallMacs, so
        // they are scored in chunks over the cores; the 257th row alone on one thread.
        options.NetworkFactory = (k, backend) => new Network([new Conv(16, 3, Conv.DefaultOptions with { Padding = 1 }), new BatchNorm(), Activation.Relu(), new Pool(),
            new Flatten(), new Dropout(0.25f), new Dense(k)], backend);
        Model = new ConvNetTrainer(options).Fit(Tiny.Data(Ml, 300));
        Rows = FashionData.TestRows(TestCount);
        Test = FashionData.Keyed(Ml, Rows);
        Scored = Model.Transform(Test);
        Scores = Scored.GetColumn<float[]>("Score").ToArray();
        Keys = Scored.GetColumn<uint>("PredictedLabel").ToArray();
    }

    public MLContext Ml { get; } = new(seed: 1);
    public ConvNetTransformer Model { get; }
    public ImageRow[] Rows { get; }
    public IDataView Test { get; }
    public IDataView Scored { get; }
    public float[][] Scores { get; }
    public uint[] Keys { get; }

    /// <summary>The saved model loaded in a new MLContext (the ML.NET-native twin: ONNX Runtime one row at a time).</summary>
    public ITransformer SaveAndLoad(MLContext into)
    {
        var stream = new MemoryStream();
        Ml.Model.Save(Model, Test.Schema, stream);
        stream.Position = 0;
        return into.Model.Load(stream, out _);
    }
}

/// <summary>
/// The fitted transformer scores with the engine in mini-batches: against the loaded model and ONNX Runtime, one row
/// at a time, batch boundaries, threads, the schema, private weights and bad input.
/// </summary>
public sealed class InferenceTests(ScoredModel s) : IClassFixture<ScoredModel>
{
    // Probabilities in [0, 1] from the engine and from ONNX Runtime differ by float32 rounding only (summation order in
    // conv and GEMM): a few 1e-7 here. 1e-5 leaves a wide margin while a wrong weight or layer is off by far more.
    private const double OrtTolerance = 1e-5;
    // The engine against itself with other batch sizes (1 row vs 256): its kernels may block a GEMM differently for
    // another batch size, and the scorer folds batch norm into the convolution, which change rounding only (a few 1e-8).
    internal const double BatchTolerance = 1e-6;

    internal static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what}: value {i} is {actual[i]}, expected {expected[i]}");
    }

    [Fact]
    public void Fitted_scores_match_the_loaded_model_within_1e_5_and_every_PredictedLabel_is_identical()
    {
        Assert.True(NetworkScorer.DefaultBatchSize * s.Model.Scorer.MacsPerSample >= NetworkScorer.SmallCallMacs, "the fixture should exercise chunks");
        var ml2 = new MLContext(seed: 9);
        var loaded = s.SaveAndLoad(ml2).Transform(FashionData.Keyed(ml2, s.Rows));
        var scores = loaded.GetColumn<float[]>("Score").ToArray();
        var keys = loaded.GetColumn<uint>("PredictedLabel").ToArray();
        Assert.Equal(ScoredModel.TestCount, scores.Length);
        for (int r = 0; r < scores.Length; r++) AssertClose(scores[r], s.Scores[r], OrtTolerance, $"row {r}");
        Assert.Equal(keys, s.Keys);
    }

    [Fact]
    public void Fitted_scores_match_the_exported_onnx_in_OnnxRuntime_within_1e_5()
    {
        var stream = new MemoryStream();
        s.Model.ExportOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        var x = s.Rows.SelectMany(r => r.Features).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(x, [s.Rows.Length, 1, 28, 28]);
        using var outputs = session.Run(new RunOptions(), ["Features"], [input], ["Score", "PredictedClassIndex"]);
        var ort = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var index = outputs[1].GetTensorDataAsSpan<long>().ToArray();
        AssertClose(ort, s.Scores.SelectMany(p => p).ToArray(), OrtTolerance, "ORT vs fitted");
        Assert.Equal(index.Select(i => (uint)i + 1), s.Keys);
    }

    [Fact]
    public void Scores_are_the_networks_softmax_on_every_row_across_the_batch_boundary()
    {
        // 257 rows: a full batch of 256 then one row. Each must equal the network run directly on that row's batch.
        var network = s.Model.Network;
        Assert.Equal(ScoredModel.TestCount, s.Scores.Length);
        foreach (var (start, count) in new[] { (0, NetworkScorer.DefaultBatchSize), (NetworkScorer.DefaultBatchSize, 1) })
        {
            var x = s.Rows.Skip(start).Take(count).SelectMany(r => r.Features).ToArray();
            var p = Softmax.Forward(network.Forward(Tensor.FromHost(x, new Shape(count, 1, 28, 28), network.Backend), training: false)).ToHost();
            for (int r = 0; r < count; r++)
            {
                var row = p.AsSpan(r * 10, 10).ToArray();
                AssertClose(row, s.Scores[start + r], BatchTolerance, $"row {start + r}"); // scored in other chunks of rows
                Assert.Equal((uint)Array.IndexOf(row, row.Max()) + 1, s.Keys[start + r]);
            }
        }
        // Pass-through columns stay with their rows across the read-ahead.
        Assert.Equal(s.Rows.Select(r => r.Features), s.Scored.GetColumn<float[]>("Features"));
        Assert.Equal(s.Test.GetColumn<uint>("Label"), s.Scored.GetColumn<uint>("Label"));
    }

    [Fact]
    public void PredictionEngine_on_the_fitted_model_gives_the_batch_rows()
    {
        using var engine = s.Ml.Model.CreatePredictionEngine<ImageRow, Prediction>(s.Model);
        for (int r = 0; r < s.Rows.Length; r++)
        {
            var p = engine.Predict(s.Rows[r]);
            AssertClose(s.Scores[r], p.Score, BatchTolerance, $"row {r}");
            Assert.Equal(s.Keys[r], p.PredictedLabel);
        }
    }

    [Fact]
    public void Cursors_and_PredictionEngines_on_several_threads_give_the_serial_answers()
    {
        const int threads = 4;
        var flat = s.Scores.SelectMany(p => p).ToArray();
        var fromCursors = new float[threads][];
        var fromEngines = new float[threads][];
        var engineKeys = new uint[threads][];
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            // Each thread its own cursor over the same IDataView, then its own PredictionEngine.
            var scored = s.Model.Transform(s.Test);
            using (var cursor = scored.GetRowCursor([scored.Schema["Score"]]))
            {
                var get = cursor.GetGetter<VBuffer<float>>(scored.Schema["Score"]);
                var all = new List<float>();
                VBuffer<float> v = default;
                while (cursor.MoveNext()) { get(ref v); all.AddRange(v.DenseValues()); }
                fromCursors[t] = all.ToArray();
            }
            using var engine = s.Ml.Model.CreatePredictionEngine<ImageRow, Prediction>(s.Model);
            var predictions = s.Rows.Select(engine.Predict).ToArray();
            fromEngines[t] = predictions.SelectMany(p => p.Score).ToArray();
            engineKeys[t] = predictions.Select(p => p.PredictedLabel).ToArray();
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        for (int t = 0; t < threads; t++)
        {
            Assert.Equal(flat, fromCursors[t]);
            AssertClose(flat, fromEngines[t], BatchTolerance, $"engine on thread {t}");
            Assert.Equal(s.Keys, engineKeys[t]);
        }
        // One network copy per concurrent forward pass at most: per thread, one worker per core or one whole-batch copy.
        Assert.InRange(s.Model.Scorer.Copies, 1, 1 + threads * (1 + Environment.ProcessorCount));
    }

    [Fact]
    public void Schema_is_exactly_the_loaded_models_also_when_input_columns_are_named_Score_or_PredictedLabel()
    {
        var rows = s.Rows.Take(3).Select(r => new CollidingRow { Features = r.Features, Label = r.Label, Score = 0.5f, PredictedLabel = "old", Other = 7 }).ToArray();
        var plain = s.Ml.Data.LoadFromEnumerable(s.Rows.Take(3));
        var colliding = s.Ml.Data.LoadFromEnumerable(rows);
        colliding = s.Ml.Transforms.CopyColumns("Other", "Label").Fit(colliding).Transform(colliding); // hides Other (Int32)
        foreach (var input in new[] { plain, colliding })
        {
            var twin = s.Model.ToMLNetTransformer().Transform(input);
            var ours = s.Model.Transform(input);
            Assert.Equal(Describe(twin.Schema), Describe(ours.Schema));
            Assert.Equal(Describe(twin.Schema), Describe(s.Model.GetRowToRowMapper(input.Schema).OutputSchema));
        }
        // Pass-through values, hidden ones included, come from the right input columns.
        var scored = s.Model.Transform(colliding);
        var hidden = scored.Schema.Where(c => c.IsHidden).ToDictionary(c => c.Name);
        Assert.Equal(new[] { 0.5f, 0.5f, 0.5f }, scored.GetColumn<float>(hidden["Score"]));
        Assert.Equal(new[] { "old", "old", "old" }, scored.GetColumn<string>(hidden["PredictedLabel"]));
        Assert.Equal(new[] { 7, 7, 7 }, scored.GetColumn<int>(hidden["Other"]));
        Assert.Equal(rows.Select(r => r.Label), scored.GetColumn<string>("Other"));
        Assert.Equal(s.Keys.Take(3), scored.GetColumn<uint>("PredictedLabel"));
    }

    /// <summary>Name, type, hidden flag and every annotation's value of each column, as text.</summary>
    private static string[] Describe(DataViewSchema schema) => schema.Select(c =>
        $"{c.Index} {c.Name} {c.Type} hidden={c.IsHidden} " + string.Join(";", c.Annotations.Schema.Select(a =>
        {
            if (a.Type is not VectorDataViewType { ItemType: TextDataViewType }) return a.Name + ":" + a.Type;
            VBuffer<ReadOnlyMemory<char>> values = default;
            c.Annotations.GetValue(a.Name, ref values);
            return a.Name + "=" + string.Join(",", values.DenseValues());
        }))).ToArray();

    public sealed class CollidingRow
    {
        [VectorType(1, 28, 28)]
        public float[] Features { get; set; } = [];
        public string Label { get; set; } = "";
        public float Score { get; set; }
        public string PredictedLabel { get; set; } = "";
        public int Other { get; set; }
    }

    [Fact]
    public void Later_changes_to_the_trained_network_reach_ExportOnnx_but_not_Transform()
    {
        var model = new ConvNetTrainer(Tiny.Options(epochs: 1, seed: 6)).Fit(Tiny.Data(s.Ml, 200));
        var data = s.Ml.Data.LoadFromEnumerable(s.Rows.Take(20));
        var before = model.Transform(data).GetColumn<float[]>("Score").SelectMany(p => p).ToArray();
        var bias = model.Network.Parameters.Single(p => p.Name == "dense1.bias").Value;
        bias.CopyFromHost(Enumerable.Range(0, 10).Select(i => i == 3 ? 50f : 0f).ToArray()); // every row would say class 3

        Assert.Equal(before, model.Transform(data).GetColumn<float[]>("Score").SelectMany(p => p).ToArray());
        using var engine = s.Ml.Model.CreatePredictionEngine<ImageRow, Prediction>(model);
        AssertClose(before[..10], engine.Predict(s.Rows[0]).Score, BatchTolerance, "PredictionEngine after the change");
        var stream = new MemoryStream();
        model.ExportOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        using var input = OrtValue.CreateTensorValueFromMemory(s.Rows[0].Features, [1, 1, 28, 28]);
        using var outputs = session.Run(new RunOptions(), ["Features"], [input], ["PredictedClassIndex"]);
        Assert.Equal(3, outputs[0].GetTensorDataAsSpan<long>()[0]);
    }

    [Fact]
    public void Features_of_the_wrong_size_are_named_with_both_shapes()
    {
        var small = s.Ml.Data.LoadFromEnumerable(new[] { new SmallRow { Features = new float[100] } });
        var e = Assert.ThrowsAny<ArgumentException>(() => s.Model.Transform(small));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("100 values", e.Message);
        Assert.Contains("[1, 28, 28]", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => s.Model.GetRowToRowMapper(small.Schema));
        Assert.Contains("'Features'", e.Message);
        var text = s.Ml.Data.LoadFromEnumerable(new[] { new { Features = "pixels" } });
        e = Assert.ThrowsAny<ArgumentException>(() => s.Model.Transform(text));
        Assert.Contains("'Features'", e.Message);
        Assert.Contains("known-size vector of Single", e.Message);
    }

    public sealed class SmallRow
    {
        [VectorType(100)]
        public float[] Features { get; set; } = [];
    }

    [Fact]
    public void A_NaN_feature_gives_NaN_scores_and_a_missing_PredictedLabel_without_disturbing_other_rows()
    {
        var rows = s.Rows.Take(3).Select(r => new ImageRow { Features = (float[])r.Features.Clone(), Label = r.Label }).ToArray();
        rows[1].Features[400] = float.NaN;
        var scored = s.Model.Transform(s.Ml.Data.LoadFromEnumerable(rows));
        var scores = scored.GetColumn<float[]>("Score").ToArray();
        var keys = scored.GetColumn<uint>("PredictedLabel").ToArray();
        Assert.All(scores[1], v => Assert.True(float.IsNaN(v)));
        Assert.Equal([s.Keys[0], 0u, s.Keys[2]], keys);
        Assert.Equal(s.Scores[0], scores[0]);
    }
}

/// <summary>The scorer's private network copies, for every preset and layer kind the trainer can export.</summary>
public sealed class NetworkScorerTests
{
    private const double BatchTolerance = InferenceTests.BatchTolerance;
    private static void AssertClose(float[] expected, float[] actual, double tolerance, string what) => InferenceTests.AssertClose(expected, actual, tolerance, what);

    public static TheoryData<string, int[]> Networks => new()
    {
        { "lenet5", [1, 28, 28] },
        { "cnn2bn", [1, 28, 28] },
        { "vgg", [3, 12, 12] },
        { "resnet", [2, 9, 9] },
        { "lrn-elu-avg-global", [3, 10, 10] },
    };

    private static Network Make(string name) => name switch
    {
        "lrn-elu-avg-global" => new Network(
            new Conv(6, 3, Conv.DefaultOptions with { Padding = 1, Stride = 2 }), new Lrn(), new Activation(ActivationKind.LeakyReLU, 0.2f),
            new Pool(new PoolingOptions { Mode = PoolingMode.AverageExcludingPadding, Window = 3, Padding = 1, Stride = 2 }),
            new Conv(5, 1, bias: false), new BatchNorm(epsilon: 1e-3f), Pool.Global(PoolingMode.Max),
            new Dropout(0.5f), new Flatten(), new Dense(7, bias: false), new Activation(ActivationKind.Tanh), new Dense(4)),
        _ => Presets.ByName(name, classes: 4),
    };

    [Theory]
    [MemberData(nameof(Networks))]
    public void Copies_score_as_the_trained_network_serially_and_on_several_threads(string name, int[] sample)
    {
        var network = Make(name).Build(new Shape(sample), seed: 13);
        // Random running statistics, so a copy that missed batch norm's buffers would show.
        var rng = new Rng(8);
        foreach (var b in network.Buffers)
            b.Value.CopyFromHost(Enumerable.Range(0, b.Value.Length).Select(_ => (float)(b.Name.EndsWith("var") ? 0.5 + rng.NextDouble() : rng.NextNormal() * 0.1)).ToArray());
        const int n = 5;
        var shape = new Shape([n, .. sample]);
        var x = Enumerable.Range(0, shape.Length).Select(_ => (float)rng.NextNormal()).ToArray();
        var expected = Softmax.Forward(network.Forward(Tensor.FromHost(x, shape), training: false)).ToHost();
        // The copies fold a batch norm that follows a conv or dense layer into its weights, which changes the rounding:
        // 1e-5 of the scores' scale then (as against ONNX Runtime, which folds too); without batch norm, bit-identical.
        bool folded = FoldsBatchNorm(network);
        double tolerance = folded ? FoldTolerance * expected.Max(Math.Abs) : BatchTolerance;

        var scorer = new NetworkScorer(network);
        var p = new float[n * 4];
        var predicted = new int[n];
        int copies = 0;
        for (int repeat = 0; repeat < 3; repeat++)
        {
            scorer.Score(x, n, p, predicted);
            // Rows are scored in chunks (cnn2bn and resnet: one row each) on other copies: the same answer per row.
            AssertClose(expected, p, tolerance, name);
            if (repeat == 0) copies = scorer.Copies;
        }
        Assert.Equal(copies, scorer.Copies); // serial scoring reuses its copies
        for (int r = 0; r < n; r++)
            Assert.Equal(Array.IndexOf(p, p.AsSpan(r * 4, 4).ToArray().Max(), r * 4) - r * 4, predicted[r]);

        var results = new float[3][];
        Parallel.For(0, 3, t =>
        {
            var mine = new float[n * 4];
            for (int repeat = 0; repeat < 4; repeat++) scorer.Score(x, n, mine, new int[n]);
            results[t] = mine;
        });
        Assert.All(results, r => Assert.Equal(p, r)); // the same chunks on any thread: bit-identical
        Assert.InRange(scorer.Copies, 1, 1 + 3 * (1 + Environment.ProcessorCount));

        // One row per call (PredictionEngine), on the one-thread copy where the row is small: the network's own answer
        // for that row, bit for bit (the kernels do not depend on the thread count).
        var one = new float[4];
        for (int r = 0; r < n; r++)
        {
            var row = x.AsSpan(r * sample.Aggregate(1, (a, b) => a * b), shape.Length / n).ToArray();
            var direct = Softmax.Forward(network.Forward(Tensor.FromHost(row, new Shape([1, .. sample])), training: false)).ToHost();
            scorer.Score(row, 1, one, new int[1]);
            if (folded) AssertClose(direct, one, tolerance, $"{name} row {r}");
            else Assert.Equal(direct, one);
        }
    }

    /// <summary>Relative to the largest magnitude compared: folding batch norm into weights changes float32 rounding only (a few 1e-7 here).</summary>
    private const double FoldTolerance = 1e-5;

    private static bool FoldsBatchNorm(Network network) =>
        network.Layers.Zip(network.Layers.Skip(1)).Any(p => p.First is Conv or Dense && p.Second is BatchNorm);

    [Theory]
    [InlineData("cnn2bn", new[] { 1, 28, 28 })]
    [InlineData("vgg", new[] { 3, 12, 12 })]
    [InlineData("lrn-elu-avg-global", new[] { 3, 10, 10 })]
    public void The_copies_fold_batch_norm_into_the_layer_before_it_and_give_the_same_logits(string name, int[] sample)
    {
        var network = Make(name).Build(new Shape(sample), seed: 5);
        Assert.True(FoldsBatchNorm(network));
        // Random batch norm statistics, scales and shifts: every term of the fold matters.
        var rng = new Rng(21);
        foreach (var b in network.Buffers)
            b.Value.CopyFromHost(Enumerable.Range(0, b.Value.Length).Select(_ => (float)(b.Name.EndsWith("var") ? 0.2 + 2 * rng.NextDouble() : rng.NextNormal())).ToArray());
        foreach (var norm in network.Layers.OfType<BatchNorm>())
            foreach (var t in norm.Parameters)
                t.Value.CopyFromHost(Enumerable.Range(0, t.Value.Length).Select(_ => (float)(0.5 + rng.NextDouble()) * (rng.NextDouble() < 0.5 ? -1 : 1)).ToArray());

        var scorer = new NetworkScorer(network);
        var template = scorer.Template;
        Assert.Empty(template.AllLayers().OfType<BatchNorm>());
        Assert.All(template.AllLayers().OfType<Conv>(), c => Assert.True(c.HasBias));
        Assert.Equal(network.Layers.Count - network.Layers.OfType<BatchNorm>().Count(), template.Layers.Count);

        const int n = 3;
        var shape = new Shape([n, .. sample]);
        var x = Enumerable.Range(0, shape.Length).Select(_ => (float)rng.NextNormal()).ToArray();
        // Logits, not probabilities: a softmax could hide an error in a class that scores low.
        var want = network.Forward(Tensor.FromHost(x, shape), training: false).ToHost();
        var got = template.Forward(Tensor.FromHost(x, shape), training: false).ToHost();
        AssertClose(want, got, FoldTolerance * want.Max(Math.Abs), name);
        Assert.NotEqual(want, got); // a fold, not the same layers (it rounds differently somewhere)
    }

    [Fact]
    public void Large_calls_are_split_into_chunks_of_rows_and_small_ones_stay_on_one_copy()
    {
        var network = Presets.LeNet5(classes: 10).Build(new Shape(1, 28, 28), seed: 1);
        var scorer = new NetworkScorer(network);
        // conv1 6x25 weights at 28x28, conv2 16x150 at 10x10, dense 400x120 + 120x84 + 84x10.
        Assert.Equal(6 * 25 * 784 + 16 * 150 * 100 + 400 * 120 + 120 * 84 + 84 * 10, scorer.MacsPerSample);
        Assert.Equal(NetworkScorer.DefaultChunkRows, scorer.ChunkRows);
        var rng = new Rng(3);
        var x = Enumerable.Range(0, 256 * 784).Select(_ => (float)rng.NextNormal()).ToArray();
        var expected = Softmax.Forward(network.Forward(Tensor.FromHost(x, new Shape(256, 1, 28, 28)), training: false)).ToHost();
        var p = new float[256 * 10];
        scorer.Score(x, 256, p, new int[256]);
        AssertClose(expected, p, BatchTolerance, "256 rows in chunks");
        Assert.InRange(scorer.Copies, 1, 1 + Environment.ProcessorCount); // the first copy, and one-thread copies for the workers
        int copies = scorer.Copies;
        scorer.Score(x, 1, p, new int[1]); // one image: a small call, on a one-thread copy already made
        Assert.Equal(expected[..10], p[..10]);
        scorer.Score(x, 256, p, new int[256]);
        Assert.Equal(copies, scorer.Copies);

        // Fewer chunks than workers, above SmallCallMacs: one batch on a copy with the backend's threads, the same answer.
        var wide = new NetworkScorer(network, chunkRows: 256);
        wide.Score(x, 256, p, new int[256]);
        AssertClose(expected, p, BatchTolerance, "256 rows as one batch");
    }

    [Fact]
    public void The_scorer_keeps_the_weights_it_was_made_with()
    {
        var network = Presets.LeNet5(classes: 4).Build(new Shape(1, 28, 28), seed: 2);
        var x = Enumerable.Range(0, 2 * 784).Select(i => (float)Math.Sin(i)).ToArray();
        var scorer = new NetworkScorer(network);
        var before = new float[8];
        scorer.Score(x, 2, before, new int[2]);
        network.Initialize(seed: 99);
        var after = new float[8];
        scorer.Score(x, 2, after, new int[2]);
        Assert.Equal(before, after);
    }
}
